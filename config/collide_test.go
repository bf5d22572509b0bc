package config

import (
	"fmt"
	"strings"
	"testing"
)

// Listeners, and the admin listener, that the kernel would not bind side
// by side are refused with both named; others pass.
func TestAddressCollisions(t *testing.T) {
	listeners := func(addrs ...string) string {
		var b strings.Builder
		for i, a := range addrs {
			fmt.Fprintf(&b, "[[listener]]\nname = \"l%d\"\naddress = %q\n", i, a)
		}
		return b.String()
	}
	admin := func(addr string) string { return fmt.Sprintf("[admin]\naddress = %q\n", addr) }
	tests := []struct {
		name string
		src  string
		line int    // 0: no error
		key  string // of the error
		msg  string
	}{
		{"different ports", listeners("0.0.0.0:1", "127.0.0.1:2"), 0, "", ""},
		{"two specific IPs", listeners("127.0.0.1:1", "127.0.0.2:1"), 0, "", ""},
		{"IPv4 wildcard and IPv6 specific", listeners("0.0.0.0:1", "[::1]:1"), 0, "", ""},
		{"port 0 everywhere", listeners("0.0.0.0:0", "127.0.0.1:0", "[::]:0"), 0, "", ""},
		{"same string", listeners("127.0.0.1:1", "127.0.0.1:1"), 6, "listener[1].address", "also used by listener[0]"},
		{"same IP spelled twice", listeners("[::ffff:127.0.0.1]:1", "127.0.0.1:1"), 6, "listener[1].address", `collides with listener[0] ("l0", "[::ffff:127.0.0.1]:1"): both bind 127.0.0.1:1`},
		{"IPv4 wildcard then specific", listeners("0.0.0.0:5", "127.0.0.1:5"), 6, "listener[1].address",
			`listener "l1": address "127.0.0.1:5" collides with listener[0] ("l0", "0.0.0.0:5"): 0.0.0.0 takes port 5 on every IPv4 address`},
		{"specific then IPv4 wildcard", listeners("127.0.0.1:5", "0.0.0.0:5"), 6, "listener[1].address", "0.0.0.0 takes port 5"},
		{"IPv6 wildcard takes IPv4", listeners("[::]:5", "10.1.2.3:5"), 6, "listener[1].address", "[::] takes port 5 on every address, IPv4 included"},
		{"empty host is the IPv6 wildcard", listeners("127.0.0.1:5", ":5"), 6, "listener[1].address", "[::] takes port 5"},
		{"wildcards of both families", listeners("0.0.0.0:5", "[::]:5"), 6, "listener[1].address", "[::] takes port 5"},
		{"localhost", listeners("localhost:5", "127.0.0.1:5"), 6, "listener[1].address", "both bind 127.0.0.1:5"},
		{"third collides with first", listeners("0.0.0.0:5", "127.0.0.1:6", "127.0.0.1:5"), 9, "listener[2].address", "listener[0]"},
		{"admin same address", admin("127.0.0.1:9333") + listeners("127.0.0.1:9333"), 2, "admin.address",
			`"127.0.0.1:9333" collides with listener[0] ("l0", "127.0.0.1:9333"): both bind 127.0.0.1:9333`},
		{"admin under a wildcard listener", admin("127.0.0.1:9333") + listeners("0.0.0.0:9333"), 2, "admin.address", "0.0.0.0 takes port 9333"},
		{"admin wildcard over a listener", admin("[::]:7000") + listeners("127.0.0.1:1", "127.0.0.1:7000"), 2, "admin.address", `listener[1] ("l1"`},
		{"admin default address", "[admin]\n" + listeners("0.0.0.0:9333"), 1, "admin.address", "collides with listener[0]"},
		{"admin elsewhere", admin("127.0.0.1:9333") + listeners("127.0.0.2:9333", "[::1]:9333"), 0, "", ""},
		{"admin port 0", admin("127.0.0.1:0") + listeners("0.0.0.0:0"), 0, "", ""},
		{"admin beside the default listener", admin("127.0.0.1:33333"), 2, "admin.address", `("plain", "0.0.0.0:33333")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("relayd.toml", []byte(tc.src))
			if tc.line == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			ce := parseError(t, tc.src)
			if ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %d %q %q; want %d %q containing %q", ce.Line, ce.Key, ce.Msg, tc.line, tc.key, tc.msg)
			}
		})
	}
}
