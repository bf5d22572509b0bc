// Command relayd-client is the interactive relay client, flag-compatible
// with the Python client:
//
//	relayd-client --host 127.0.0.1 --port 33333 --client-id alice --to-client-id bob
//
// Each line of stdin is sent (without its newline) to --to-client-id; each
// frame received is printed as "FROM: PAYLOAD" with non-printable bytes
// escaped. /quit, /exit or the end of stdin closes the client.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/internal/buildinfo"
)

// maxLine bounds one line of stdin: the server's default max_payload.
const maxLine = 8 << 20

// closeGrace is how long the client waits, after sending its last frame,
// for the server to close its side.
const closeGrace = 2 * time.Second

// version is set at build time: -ldflags "-X main.version=1.2.3" (make build).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	host, id, to           string
	port                   int
	useTLS                 bool
	ca, cert, key, sniName string
	heartbeat              time.Duration
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("relayd-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.host, "host", "127.0.0.1", "relay `host`")
	fs.IntVar(&o.port, "port", 33333, "relay `port`")
	fs.StringVar(&o.id, "client-id", "", "log in as this `ID` (required)")
	fs.StringVar(&o.to, "to-client-id", "", "send each stdin line to this `ID` (required)")
	fs.BoolVar(&o.useTLS, "tls", false, "connect with TLS")
	fs.StringVar(&o.ca, "ca", "", "verify the server with this CA `file` (PEM) instead of the system roots")
	fs.StringVar(&o.cert, "cert", "", "client certificate `file` (PEM) for mTLS")
	fs.StringVar(&o.key, "key", "", "client key `file` (PEM) for mTLS")
	fs.StringVar(&o.sniName, "server-name", "", "expected server `name` in its certificate (default: --host)")
	fs.DurationVar(&o.heartbeat, "heartbeat", client.DefaultHeartbeat, "heartbeat `interval`")
	showVersion := fs.Bool("version", false, "print the version and commit and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "relayd-client %s (commit %s)\n", version, buildinfo.Commit())
		return 0
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "relayd-client: unexpected arguments %q\n", fs.Args())
		return 2
	case o.id == "" || o.to == "":
		fmt.Fprintln(stderr, "relayd-client: --client-id and --to-client-id are required")
		return 2
	case len(o.id) > 255 || len(o.to) > 255:
		fmt.Fprintln(stderr, "relayd-client: client IDs are at most 255 bytes")
		return 2
	case o.heartbeat <= 0:
		fmt.Fprintln(stderr, "relayd-client: --heartbeat must be positive")
		return 2
	case (o.cert == "") != (o.key == ""):
		fmt.Fprintln(stderr, "relayd-client: --cert and --key go together")
		return 2
	}

	opts := &client.Options{Heartbeat: o.heartbeat}
	var tc *tls.Config
	if o.useTLS {
		var err error
		if tc, err = o.tlsConfig(); err != nil {
			fmt.Fprintf(stderr, "relayd-client: %v\n", err)
			return 1
		}
	}
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	nc, err := connect(ctx, addr, tc, &o)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "relayd-client: %v\n", err)
		return 1
	}
	sess := &session{o: &o, addr: addr, tls: tc != nil}
	c, err := client.New(nc, o.id, opts)
	if err != nil {
		_ = nc.Close()
		fmt.Fprintf(stderr, "relayd-client: log in to %s: %v\n", addr, err)
		return 1
	}
	sess.loggedIn = time.Now()
	defer c.Close()
	fmt.Fprintf(stderr, "relayd-client: connected to %s as %q, sending to %q\n", addr, o.id, o.to)

	received := make(chan error, 1)
	go func() { received <- printFrames(c, stdout, &sess.received) }()
	sent := make(chan error, 1)
	go func() { sent <- sendLines(c, o.to, stdin) }()

	select {
	case err := <-received: // the server closed us while we were still sending
		fmt.Fprintf(stderr, "relayd-client: %s\n", sess.problem(err))
		return 1
	case err := <-sent:
		if err != nil {
			fmt.Fprintf(stderr, "relayd-client: %s\n", sess.problem(err))
			return 1
		}
	}
	// Done sending: half-close so the server reads every frame and then the
	// end of the stream, and wait for it to close its side.
	if err := c.CloseWrite(); err != nil {
		fmt.Fprintf(stderr, "relayd-client: %s\n", sess.problem(err))
		return 1
	}
	select {
	case <-received:
	case <-time.After(closeGrace):
	}
	return 0
}

func (o *options) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.sniName}
	if tc.ServerName == "" {
		tc.ServerName = o.host
	}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca: no PEM certificate in %s", o.ca)
		}
		tc.RootCAs = pool
	}
	if o.cert != "" {
		cert, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// sendLines sends each line of r as one payload until EOF, /quit or /exit.
func sendLines(c *client.Client, to string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine+1)
	for sc.Scan() {
		line := sc.Bytes()
		if s := string(line); s == "/quit" || s == "/exit" {
			return nil
		}
		if err := c.Send(to, line); err != nil {
			return err
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("a line of stdin is longer than %d bytes", maxLine)
	}
	return sc.Err()
}

// printFrames prints every received frame until the connection ends, and
// notes in received that one arrived.
func printFrames(c *client.Client, stdout io.Writer, received *atomic.Bool) error {
	w := bufio.NewWriter(stdout)
	var line []byte
	for {
		m, err := c.Recv()
		if err != nil {
			return err
		}
		received.Store(true)
		line = appendEscaped(line[:0], m.From)
		line = append(line, ':', ' ')
		line = appendEscaped(line, m.Payload)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// appendEscaped appends b with printable UTF-8 as is and everything else
// (control bytes, invalid UTF-8, backslash) escaped Go-style, so that a
// frame is always exactly one line of output.
func appendEscaped(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\\':
			dst = append(dst, '\\', '\\')
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r == utf8.RuneError && n == 1, !unicode.IsPrint(r):
			for _, c := range b[:n] {
				dst = fmt.Appendf(dst, `\x%02x`, c)
			}
		default:
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// commit is the VCS revision the binary was built from, as relayd reports it.
