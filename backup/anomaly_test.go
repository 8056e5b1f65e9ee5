package backup

import (
	"strings"
	"testing"
)

func TestSizeAnomaly(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name      string
		history   []int64
		latest    int64
		threshold float64
		n         int
		want      bool
		reason    string
	}{
		{"steady", []int64{100 * mib, 102 * mib, 101 * mib}, 103 * mib, 50, 7, false, "2% above the median 101.0 MiB of the last 3 backup(s)"},
		{"doubled", []int64{100 * mib, 102 * mib, 101 * mib}, 210 * mib, 50, 7, true, "size 210.0 MiB is 108% above the median 101.0 MiB"},
		{"shrunk: a database missing", []int64{100 * mib, 100 * mib, 100 * mib}, 30 * mib, 50, 7, true, "70% below"},
		{"just at the threshold is not past it", []int64{100, 100}, 150, 50, 7, false, "50% above"},
		{"even count: mean of the middle two", []int64{100, 200, 300, 400}, 250, 10, 0, false, "0% above the median 250 B of the last 4"},
		{"only the last n count", []int64{10 * mib, 10 * mib, 100 * mib, 100 * mib, 100 * mib}, 100 * mib, 20, 3, false, "of the last 3 backup(s)"},
		{"all history when n <= 0", []int64{10 * mib, 10 * mib, 10 * mib, 100 * mib, 100 * mib}, 100 * mib, 20, 0, true, "of the last 5 backup(s)"},
		{"an outlier does not move the median", []int64{100, 100, 10000, 100, 100}, 110, 20, 5, false, "10% above the median 100 B"},
		{"no history", nil, 100, 50, 7, false, "no earlier backup"},
		{"empty before, something now", []int64{0, 0}, 5, 50, 7, true, "where the median 0 B"},
		{"empty before and now", []int64{0, 0}, 0, 50, 7, false, "size 0 B"},
		{"threshold 0 disables", []int64{1, 1}, 1000, 0, 7, false, "disabled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := SizeAnomaly(tc.history, tc.latest, tc.threshold, tc.n)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("SizeAnomaly = %v, %q; want %v with %q", got, reason, tc.want, tc.reason)
			}
		})
	}
}

func TestStorageAlert(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name       string
		used, free uint64
		warn, crit float64
		want       StorageLevel
		reason     string
	}{
		{"plenty", 10 * gib, 90 * gib, 80, 90, StorageOK, "10.0% used: 10.0 GiB stored, 90.0 GiB free"},
		{"warning", 80 * gib, 20 * gib, 80, 90, StorageWarning, "80.0% used"},
		{"critical", 95 * gib, 5 * gib, 80, 90, StorageCritical, "hestami backup prune"},
		{"critical beats warning", 100 * gib, 0, 80, 90, StorageCritical, "100.0% used"},
		{"warning only", 99 * gib, 1 * gib, 80, 0, StorageWarning, "warning at 80%"},
		{"no thresholds", 99 * gib, 1 * gib, 0, 0, StorageOK, "99.0% used"},
		{"nothing known", 0, 0, 80, 90, StorageOK, "holds nothing"},
		{"huge values do not overflow", 1 << 63, 1 << 63, 80, 90, StorageOK, "50.0% used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := StorageAlert(tc.used, tc.free, tc.warn, tc.crit)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("StorageAlert = %s, %q; want %s with %q", got, reason, tc.want, tc.reason)
			}
		})
	}
}
