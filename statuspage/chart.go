package statuspage

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/hestami/hestami/backup"
)

// series is one line of the size chart: the complete backups of one type.
type series struct {
	Name   string
	Color  string
	Marker string // "circle" or "square": shape tells the lines apart without colour
	Points []point
}

// point is one backup on the chart.
type point struct {
	ID    string
	Time  time.Time
	Bytes int64
}

// Chart geometry, in SVG user units (the SVG scales to the page's width).
const (
	chartWidth   = 760
	chartHeight  = 300
	chartLeft    = 78 // room for the size labels
	chartRight   = 16
	chartTop     = 16
	chartBottom  = 48 // room for the date labels
	chartXTicks  = 5
	chartYTicks  = 4
	markerRadius = 4.5
)

// sizeChart draws the stored size of each backup over time, one line and one marker
// per backup for each series, with labelled axes, as inline SVG. It is accessible by
// itself: a title and description, each point titled with its backup, size and time,
// and the markers differ in shape as well as colour.
func sizeChart(ss []series) template.HTML {
	var tmin, tmax time.Time
	var smax int64
	n := 0
	for _, s := range ss {
		for _, p := range s.Points {
			if n == 0 || p.Time.Before(tmin) {
				tmin = p.Time
			}
			if n == 0 || p.Time.After(tmax) {
				tmax = p.Time
			}
			smax = max(smax, p.Bytes)
			n++
		}
	}
	var b strings.Builder
	b.WriteString(`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 760 300" role="img" aria-labelledby="chart-title chart-desc">`)
	b.WriteString(`<title id="chart-title">Stored size of each backup over time</title>`)
	if n == 0 {
		b.WriteString(`<desc id="chart-desc">No complete backups yet.</desc>`)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" class="empty">No complete backups yet</text></svg>`, chartWidth/2, chartHeight/2)
		return template.HTML(b.String())
	}
	var desc []string
	for _, s := range ss {
		if len(s.Points) == 0 {
			continue
		}
		last := s.Points[len(s.Points)-1]
		desc = append(desc, fmt.Sprintf("%s: %d backups, newest %s stored", s.Name, len(s.Points), backup.FormatBytes(last.Bytes)))
	}
	fmt.Fprintf(&b, `<desc id="chart-desc">%s. The tables below list every size.</desc>`, esc(strings.Join(desc, "; ")))

	// One backup alone, or all at the same time: give the axis a day around them.
	if !tmax.After(tmin) {
		tmin, tmax = tmin.Add(-12*time.Hour), tmax.Add(12*time.Hour)
	}
	yTicks, ymax := sizeTicks(smax, chartYTicks)
	plotW := float64(chartWidth - chartLeft - chartRight)
	plotH := float64(chartHeight - chartTop - chartBottom)
	x := func(t time.Time) float64 {
		return float64(chartLeft) + plotW*float64(t.Sub(tmin))/float64(tmax.Sub(tmin))
	}
	y := func(v int64) float64 {
		return float64(chartTop) + plotH*(1-float64(v)/float64(ymax))
	}

	// Grid and y axis (sizes).
	b.WriteString(`<g class="axis y-axis">`)
	for _, v := range yTicks {
		yy := y(v)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, yy, chartWidth-chartRight, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, chartLeft-8, yy, esc(backup.FormatBytes(v)))
	}
	fmt.Fprintf(&b, `<text class="axis-title" transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">Stored size</text>`, float64(chartTop)+plotH/2)
	b.WriteString(`</g>`)

	// x axis (time).
	b.WriteString(`<g class="axis x-axis">`)
	fmt.Fprintf(&b, `<line class="axis-line" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, y(0), chartWidth-chartRight, y(0))
	layout := timeLayout(tmax.Sub(tmin))
	for i := 0; i <= chartXTicks; i++ {
		t := tmin.Add(time.Duration(float64(tmax.Sub(tmin)) * float64(i) / chartXTicks))
		xx := x(t)
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case chartXTicks:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<line class="tick" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, xx, y(0), xx, y(0)+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`, xx, y(0)+20, anchor, esc(t.UTC().Format(layout)))
	}
	fmt.Fprintf(&b, `<text class="axis-title" x="%.1f" y="%d" text-anchor="middle">Backup start (UTC)</text>`, float64(chartLeft)+plotW/2, chartHeight-4)
	b.WriteString(`</g>`)

	// The series: a line through the points, then a marker per backup.
	for _, s := range ss {
		if len(s.Points) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<g class="series" data-type="%s">`, esc(s.Name))
		if len(s.Points) > 1 {
			var pts []string
			for _, p := range s.Points {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Time), y(p.Bytes)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
		}
		for _, p := range s.Points {
			title := fmt.Sprintf("%s (%s): %s stored, started %s", p.ID, s.Name, backup.FormatBytes(p.Bytes), p.Time.UTC().Format("2006-01-02 15:04 UTC"))
			fmt.Fprintf(&b, `<g class="point" data-backup="%s" data-bytes="%d">%s<title>%s</title></g>`,
				esc(p.ID), p.Bytes, marker(s.Marker, s.Color, x(p.Time), y(p.Bytes)), esc(title))
		}
		b.WriteString(`</g>`)
	}

	// Legend, top left inside the plot.
	lx := float64(chartLeft) + 12
	for i, s := range ss {
		ly := float64(chartTop) + 12 + float64(i)*18
		fmt.Fprintf(&b, `<g class="legend">%s<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text></g>`,
			marker(s.Marker, s.Color, lx, ly), lx+10, ly, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func marker(shape, color string, x, y float64) string {
	if shape == "square" {
		r := markerRadius
		return fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="#fff" stroke-width="1"/>`, x-r, y-r, 2*r, 2*r, color)
	}
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" stroke="#fff" stroke-width="1"/>`, x, y, markerRadius+0.5, color)
}

// sizeTicks returns n+1 round tick values from 0 covering maxBytes (in powers of
// 1024 times 1, 2, 2.5 or 5), and the axis maximum.
func sizeTicks(maxBytes int64, n int) ([]int64, int64) {
	if maxBytes <= 0 {
		maxBytes = 1
	}
	raw := float64(maxBytes) / float64(n)
	unit := 1.0
	for raw/unit >= 1024 {
		unit *= 1024
	}
	step := unit
	for _, m := range []float64{1, 2, 2.5, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 1024} {
		if m*unit >= raw {
			step = m * unit
			break
		}
	}
	step = math.Ceil(step)
	ticks := make([]int64, 0, n+1)
	for i := 0; i <= n; i++ {
		ticks = append(ticks, int64(step)*int64(i))
	}
	return ticks, ticks[len(ticks)-1]
}

// timeLayout picks a date format for a time axis spanning d.
func timeLayout(d time.Duration) string {
	switch {
	case d <= time.Minute: // backups taken by hand, seconds apart
		return "15:04:05.000"
	case d <= 2*time.Hour:
		return "15:04:05"
	case d <= 36*time.Hour:
		return "Jan 2 15:04"
	case d <= 365*24*time.Hour:
		return "Jan 2"
	default:
		return "2006-01"
	}
}

func esc(s string) string { return template.HTMLEscapeString(s) }
