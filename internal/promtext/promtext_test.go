package promtext

import (
	"math"
	"strings"
	"testing"
)

const before = `# HELP x_seconds A histogram.
# TYPE x_seconds histogram
x_seconds_bucket{route="/a",le="0.001"} 10
x_seconds_bucket{route="/a",le="0.01"} 20
x_seconds_bucket{route="/a",le="+Inf"} 20
x_seconds_bucket{route="/b",le="0.001"} 5
x_seconds_bucket{route="/b",le="0.01"} 5
x_seconds_bucket{route="/b",le="+Inf"} 5
x_seconds_sum 0.1
x_seconds_count 25
`

const after = `x_seconds_bucket{route="/a",le="0.001"} 10
x_seconds_bucket{route="/a",le="0.01"} 118
x_seconds_bucket{route="/a",le="+Inf"} 120
x_seconds_bucket{route="/b",le="0.001"} 105
x_seconds_bucket{route="/b",le="0.01"} 105
x_seconds_bucket{route="/b",le="+Inf"} 105
`

func TestSinceSumsSelectedSeries(t *testing.T) {
	read := func(text string, labels ...string) Histogram {
		h, err := Read(strings.NewReader(text), Selector{Metric: "x_seconds", Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// Route /a alone: 100 more, 98 of them under 10 ms, 2 past it.
	s := read(after, `route="/a"`).Since(read(before, `route="/a"`))
	if s.N != 100 || s.P50 != 0.01 || s.P99 != math.Inf(1) || s.Max != math.Inf(1) {
		t.Errorf("route /a: %+v", s)
	}
	// Both routes: 200 more, half under 1 ms.
	s = read(after).Since(read(before))
	if s.N != 200 || s.P50 != 0.001 || s.P99 != 0.01 || s.Max != math.Inf(1) {
		t.Errorf("both routes: %+v", s)
	}
	if s := read(after, `route="/c"`).Since(nil); s.N != 0 {
		t.Errorf("no series: %+v", s)
	}
	if s := read(after).Since(read(after)); s.N != 0 {
		t.Errorf("nothing counted in between: %+v", s)
	}
}
