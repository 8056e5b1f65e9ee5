package backup

import (
	"fmt"
	"math"
	"slices"
)

// SizeAnomaly tells whether a backup's size (latest) departs from the median of the
// last n sizes before it (history, oldest first; n <= 0: all of it) by more than
// thresholdPercent, either way: a backup much larger than usual fills storage, one
// much smaller often means something is missing from it (a database not dumped, a
// table truncated). reason says what was compared, for an alert's text, also when
// there is no anomaly (or not enough history to tell).
func SizeAnomaly(history []int64, latest int64, thresholdPercent float64, n int) (bool, string) {
	if thresholdPercent <= 0 || math.IsNaN(thresholdPercent) {
		return false, fmt.Sprintf("size check disabled (threshold %g%%)", thresholdPercent)
	}
	if n > 0 && len(history) > n {
		history = history[len(history)-n:]
	}
	if len(history) == 0 {
		return false, "no earlier backup to compare the size with"
	}
	med := median(history)
	what := fmt.Sprintf("the median %s of the last %d backup(s)", FormatBytes(int64(med)), len(history))
	if med == 0 {
		if latest == 0 {
			return false, fmt.Sprintf("size 0 B, as %s", what)
		}
		return true, fmt.Sprintf("size %s, where %s is 0 B", FormatBytes(latest), what)
	}
	change := (float64(latest) - med) / med * 100
	dir := "above"
	if change < 0 {
		dir = "below"
	}
	reason := fmt.Sprintf("size %s is %.0f%% %s %s (threshold %g%%)", FormatBytes(latest), math.Abs(change), dir, what, thresholdPercent)
	return math.Abs(change) > thresholdPercent, reason
}

func median(v []int64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return float64(s[m])
	}
	return (float64(s[m-1]) + float64(s[m])) / 2
}

// StorageLevel is how full a storage is. Its warning and critical values are the
// alert package's severity names.
type StorageLevel string

// Storage levels.
const (
	StorageOK       StorageLevel = "ok"
	StorageWarning  StorageLevel = "warning"
	StorageCritical StorageLevel = "critical"
)

// StorageAlert rates a storage holding used bytes with free bytes left: the share
// used of the space hestami can have (used+free) against warnPercent and
// critPercent (each ignored when <= 0). reason is for the alert's text.
func StorageAlert(used, free uint64, warnPercent, critPercent float64) (StorageLevel, string) {
	total := float64(used) + float64(free)
	if total == 0 {
		return StorageOK, "the storage holds nothing and reports no free space"
	}
	pct := float64(used) / total * 100
	desc := fmt.Sprintf("%.1f%% used: %s stored, %s free", pct, FormatBytes(clampInt64(used)), FormatBytes(clampInt64(free)))
	switch {
	case critPercent > 0 && pct >= critPercent:
		return StorageCritical, fmt.Sprintf("%s (critical at %g%%): backups will fail once it is full; prune (hestami backup prune), lower the retention or move to a larger storage", desc, critPercent)
	case warnPercent > 0 && pct >= warnPercent:
		return StorageWarning, fmt.Sprintf("%s (warning at %g%%); see hestami backup forecast for the space retention will need", desc, warnPercent)
	}
	return StorageOK, desc
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
