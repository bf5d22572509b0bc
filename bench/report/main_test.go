package main

import "testing"

// The latency table reports, per percentile, the median of the rounds.
func TestMedians(t *testing.T) {
	r := func(p50, p99, p999 float64) result { return result{P50: p50, P99: p99, P999: p999} }
	for _, tc := range []struct {
		rounds []result
		want   result
	}{
		{[]result{r(170, 300, 900)}, r(170, 300, 900)},
		{[]result{r(300, 10, 5), r(100, 30, 7), r(200, 20, 6)}, r(200, 20, 6)},               // each percentile on its own
		{[]result{r(100, 1, 1), r(400, 4, 4), r(200, 2, 2), r(300, 3, 3)}, r(250, 2.5, 2.5)}, // even: the mean of the middle two
	} {
		if got := medians(tc.rounds); got != tc.want {
			t.Errorf("medians(%v) = %v, want %v", tc.rounds, got, tc.want)
		}
	}
	if got := p50s([]result{r(129, 0, 0), r(140.4, 0, 0)}); got != "129, 140 µs" {
		t.Errorf("p50s = %q", got)
	}
}

func TestRatioAndUnits(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ratio(3, 2), "1.50×"},
		{ratio(1, 0), "n/a"},
		{num(4_760_000), "4.76 M"},
		{num(653_400), "653.4 k"},
		{num(829), "829"},
		{size(64), "64 B"},
		{size(1 << 10), "1 KiB"},
		{size(1 << 20), "1 MiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
