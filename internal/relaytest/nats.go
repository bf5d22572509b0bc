package relaytest

import (
	"net"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// NATSOptions are an embedded nats-server's options for tests: loopback, a
// kernel-chosen port, no logs, no signal handlers.
func NATSOptions() *natsserver.Options {
	return &natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true}
}

// StartNATS runs an embedded nats-server with o until the test ends.
func StartNATS(tb testing.TB, o *natsserver.Options) *natsserver.Server {
	tb.Helper()
	s, err := natsserver.NewServer(o)
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// NATSURL is the URL clients of s connect to.
func NATSURL(s *natsserver.Server) string {
	return "nats://" + s.Addr().(*net.TCPAddr).String()
}
