package backup

import "io"

// Progress receives the progress of a long operation. The CLI shows it on a terminal
// (bytes, rate, ETA) and logs structured lines otherwise.
type Progress interface {
	// Start announces a phase and its expected total bytes (0: unknown).
	Start(phase string, total int64)
	// Add reports n more bytes done.
	Add(n int64)
	// Done ends the phase.
	Done()
}

// NoProgress discards progress.
type NoProgress struct{}

// Start implements Progress.
func (NoProgress) Start(string, int64) {}

// Add implements Progress.
func (NoProgress) Add(int64) {}

// Done implements Progress.
func (NoProgress) Done() {}

// ProgressReader counts bytes read through it into a Progress.
type ProgressReader struct {
	R io.Reader
	P Progress
}

// Read implements io.Reader.
func (p ProgressReader) Read(b []byte) (int, error) {
	n, err := p.R.Read(b)
	if n > 0 {
		p.P.Add(int64(n))
	}
	return n, err
}
