package qrcode_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/hestami/hestami/qrcode"
)

const otpauth = "otpauth://totp/Hestami:ann@example.com?algorithm=SHA1&digits=6&issuer=Hestami&period=30&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

func dark(img image.Image, x, y int) bool {
	g := color.GrayModel.Convert(img.At(x, y)).(color.Gray)
	return g.Y < 128
}

// grid reads img back into modules: the first dark pixel on the diagonal is
// the top-left finder pattern's corner, 4 modules (the quiet zone) in; its
// width is 7 modules; the symbol, quiet zone included, fills the image.
func grid(t *testing.T, img image.Image) (n int, at func(mx, my int) bool) {
	t.Helper()
	size := img.Bounds().Dx()
	x0 := -1
	for x := 0; x < size && x0 < 0; x++ {
		if dark(img, x, x) {
			x0 = x
		}
	}
	if x0 <= 0 {
		t.Fatalf("no dark module on the diagonal, or no quiet zone (first dark pixel at %d)", x0)
	}
	w := 0
	for x := x0; x < size && dark(img, x, x0); x++ {
		w++
	}
	n = int(math.Round(float64(size) / (float64(w) / 7)))
	pm := float64(size) / float64(n)
	return n, func(mx, my int) bool { return dark(img, int((float64(mx)+0.5)*pm), int((float64(my)+0.5)*pm)) }
}

// finder reports whether a QR finder pattern (a 7×7 dark ring, a light ring,
// a dark 3×3 centre) has its top-left module at mx, my.
func finder(at func(mx, my int) bool, mx, my int) bool {
	for y := 0; y < 7; y++ {
		for x := 0; x < 7; x++ {
			ring := x == 0 || y == 0 || x == 6 || y == 6
			centre := x >= 2 && x <= 4 && y >= 2 && y <= 4
			if at(mx+x, my+y) != (ring || centre) {
				return false
			}
		}
	}
	return true
}

func TestPNG(t *testing.T) {
	t.Parallel()
	b, err := qrcode.PNG(otpauth, 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 256 || r.Dy() != 256 {
		t.Fatalf("image is %dx%d, want 256x256", r.Dx(), r.Dy())
	}
	n, at := grid(t, img)
	// A QR code of version v has 17+4v modules a side, plus 4 of quiet zone
	// on each side.
	if side := n - 8; side < 21 || (side-17)%4 != 0 {
		t.Fatalf("%d modules a side (quiet zone included): not a QR code's size", n)
	}
	far := n - 4 - 7
	if !finder(at, 4, 4) || !finder(at, far, 4) || !finder(at, 4, far) {
		t.Error("finder patterns missing from the top-left, top-right or bottom-left corner")
	}
	if finder(at, far, far) {
		t.Error("a finder pattern in the bottom-right corner: not a QR code")
	}
	for i := 0; i < n; i++ {
		if at(i, 0) || at(0, i) || at(i, n-1) || at(n-1, i) {
			t.Fatal("the quiet zone around the code is not light")
		}
	}
	// Timing pattern: row 6 alternates between the finder patterns.
	for x := 4 + 8; x < far-1; x++ {
		if at(x, 4+6) != (x%2 == 0) {
			t.Fatalf("timing pattern broken at module %d", x)
		}
	}

	other, err := qrcode.PNG(strings.Replace(otpauth, "ann@", "bob@", 1), 256)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(b, other) {
		t.Error("two different texts gave the same image")
	}
}

func TestPNGRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		size       int
	}{
		{"empty text", "", 256},
		{"too small to scan", otpauth, 32},
		{"too long for a QR code", strings.Repeat("x", 8000), 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := qrcode.PNG(tc.text, tc.size); err == nil {
				t.Errorf("PNG = %d bytes, want an error", len(b))
			}
		})
	}
}
