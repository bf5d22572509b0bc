package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// endpoint is a validated listen address as the kernel sees it.
type endpoint struct {
	ip   netip.Addr // "::" for an empty host: every address of both families
	port int
}

// parseEndpoint reads a checked address; ok is false for port 0, which the
// kernel makes unique, so it never collides.
func parseEndpoint(addr string) (e endpoint, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return e, false
	}
	if e.port, err = strconv.Atoi(port); err != nil || e.port == 0 {
		return e, false
	}
	switch host {
	case "":
		e.ip = netip.IPv6Unspecified()
	case "localhost":
		e.ip = netip.AddrFrom4([4]byte{127, 0, 0, 1}) // what Go binds for it
	default:
		if e.ip, err = netip.ParseAddr(host); err != nil {
			return e, false
		}
		e.ip = e.ip.Unmap()
	}
	return e, true
}

// collision says why a and b cannot both be bound, or "" when they can.
// Linux refuses a second listening socket on a port that a wildcard of the
// same family holds, and relayd binds "[::]" dual-stack, so it holds the
// port for IPv4 too.
func collision(a, b endpoint) string {
	if a.port != b.port {
		return ""
	}
	if a.ip == b.ip {
		return fmt.Sprintf("both bind %s", net.JoinHostPort(a.ip.String(), strconv.Itoa(a.port)))
	}
	for _, w := range []struct{ wild, other endpoint }{{a, b}, {b, a}} {
		switch {
		case !w.wild.ip.IsUnspecified():
		case w.wild.ip.Is6():
			return fmt.Sprintf("[::] takes port %d on every address, IPv4 included", a.port)
		case w.other.ip.Is4():
			return fmt.Sprintf("0.0.0.0 takes port %d on every IPv4 address", a.port)
		}
	}
	return ""
}

// checkCollisions refuses listeners (and the admin listener) that the
// kernel would not let bind side by side, so that relayd -t finds what
// the start would fail on, and names both.
func (c *Config) checkCollisions() error {
	eps := make([]endpoint, len(c.Listeners))
	ok := make([]bool, len(c.Listeners))
	for i := range c.Listeners {
		l := &c.Listeners[i]
		eps[i], ok[i] = parseEndpoint(l.Address)
		for j := 0; j < i && ok[i]; j++ {
			o := &c.Listeners[j]
			if !ok[j] {
				continue
			}
			if o.Address == l.Address {
				return invalid(listenerKey(i, "address"), "listener %q: address %q is also used by listener[%d]", l.Name, l.Address, j)
			}
			if why := collision(eps[j], eps[i]); why != "" {
				return invalid(listenerKey(i, "address"), "listener %q: address %q collides with listener[%d] (%q, %q): %s",
					l.Name, l.Address, j, o.Name, o.Address, why)
			}
		}
	}
	if c.Admin == nil {
		return nil
	}
	admin, aok := parseEndpoint(c.Admin.Address)
	for i := range c.Listeners {
		if !aok || !ok[i] {
			continue
		}
		l := &c.Listeners[i]
		if why := collision(admin, eps[i]); why != "" {
			return invalid(key("admin", "address"), "%q collides with listener[%d] (%q, %q): %s",
				c.Admin.Address, i, l.Name, l.Address, why)
		}
	}
	return nil
}
