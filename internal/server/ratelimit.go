package server

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"

	"github.com/relayd/relayd/config"
)

// ipRates are the logins_per_ip token buckets of one listener: n new
// connections per second per client address, with a burst of n. Refused
// connections take no token. Buckets that have refilled are forgotten
// when there are many, so the map stays as large as the set of addresses
// connecting right now.
type ipRates struct {
	buckets map[netip.Addr]*rate.Limiter
	swept   time.Time
}

const sweepAbove = 4096 // buckets kept before full ones are forgotten

func (r *ipRates) allow(ip netip.Addr, n int, now time.Time) bool {
	if r.buckets == nil {
		r.buckets = make(map[netip.Addr]*rate.Limiter)
	}
	b := r.buckets[ip]
	if b == nil {
		if len(r.buckets) >= sweepAbove && now.Sub(r.swept) > time.Second {
			r.sweep(now)
		}
		b = rate.NewLimiter(rate.Limit(n), n)
		r.buckets[ip] = b
	} else if b.Burst() != n { // logins_per_ip changed by a reload
		b.SetLimitAt(now, rate.Limit(n))
		b.SetBurstAt(now, n)
	}
	return b.AllowN(now, 1)
}

func (r *ipRates) sweep(now time.Time) {
	r.swept = now
	for ip, b := range r.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(r.buckets, ip)
		}
	}
}

// pacer applies rate_limit to one connection's reads: after each read the
// connection waits until the bytes it read are within the rate, so TCP
// paces a faster sender (SPEC §4: never a drop or a disconnect). Owned by
// the read loop.
type pacer struct {
	lim   *rate.Limiter
	limit config.Size // the rate_limit lim was made for
	burst int
}

// reads returns how many bytes the next read may take; 0: no limit.
func (p *pacer) reads(l *config.Limits, now time.Time) int {
	if l.RateLimit <= 0 {
		p.lim = nil
		return 0
	}
	burst := max(l.Burst(), 1)
	switch {
	case p.lim == nil:
		p.lim = rate.NewLimiter(rate.Limit(l.RateLimit), burst)
	case p.limit != l.RateLimit || p.burst != burst:
		p.lim.SetLimitAt(now, rate.Limit(l.RateLimit))
		p.lim.SetBurstAt(now, burst)
	}
	p.limit, p.burst = l.RateLimit, burst
	return burst
}

// delay takes n bytes' tokens and returns how long to wait before reading
// more.
func (p *pacer) delay(n int, now time.Time) time.Duration {
	if p == nil || p.lim == nil || n <= 0 {
		return 0
	}
	return p.lim.ReserveN(now, n).DelayFrom(now)
}
