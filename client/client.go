// Package client is the Go client library for relayd (RELY v1): dial a
// relay, log in with a ClientID, send payloads to other ClientIDs and receive
// the frames they send you.
//
//	c, err := client.Dial(ctx, "relay.example.com:33333", "alice", nil)
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Send("bob", []byte("hello"))
//	msg, err := c.Recv() // msg.From, msg.Payload
//
// The protocol has no acknowledgements: a frame to a ClientID that is not
// logged in is silently dropped by the server. A Client sends heartbeats on
// its own so that the server does not close it as idle.
package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/protocol"
)

// DefaultHeartbeat is how often a Client sends a heartbeat when
// Options.Heartbeat is zero: well within the server's default idle timeout.
const DefaultHeartbeat = 30 * time.Second

// DefaultMaxPayload is the largest payload Recv accepts when
// Options.MaxPayload is zero.
const DefaultMaxPayload = 64 << 20

var (
	// ErrServerClosed is returned (wrapped) by Recv and the send methods when
	// the server closed the connection: it was kicked by a newer login with
	// the same ClientID, timed out, or the server shut down. The protocol
	// does not say which.
	ErrServerClosed = errors.New("relay: connection closed by server")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("relay: client closed")
)

// Options tune a Client. The zero value is ready to use.
type Options struct {
	// TLS, if set, makes Dial use TLS with this configuration (set
	// ServerName, RootCAs and, for mTLS, Certificates).
	TLS *tls.Config
	// Heartbeat is the interval of automatic heartbeats; 0 means
	// DefaultHeartbeat, a negative value disables them.
	Heartbeat time.Duration
	// MaxPayload bounds the payload of a received frame; 0 means
	// DefaultMaxPayload. A larger frame makes Recv fail.
	MaxPayload int
	// ReadBufferSize and WriteBufferSize size the client's buffers; 0 means
	// 64 KiB. Small buffers suit many mostly idle clients; the read buffer
	// is at least 1 KiB.
	ReadBufferSize, WriteBufferSize int
}

const defaultBufferSize = 64 << 10

// Message is a frame received from another client. Its slices are only
// valid until the next call to Recv: copy them to keep them.
type Message struct {
	From    []byte // the sender's ClientID
	Payload []byte
}

// Client is a connection logged in to a relay. Recv must be called from one
// goroutine at a time; the send methods are safe for concurrent use.
type Client struct {
	// Static after construction.
	conn   net.Conn
	id     string
	done   chan struct{} // closed by Close
	hbDone chan struct{} // closed when the heartbeat goroutine has ended

	// Owned by the Recv caller.
	r *protocol.Reader

	wmu  sync.Mutex
	bw   *bufio.Writer // guarded by wmu
	wbuf []byte        // guarded by wmu; encoding scratch
	werr error         // guarded by wmu; first write error, sticky

	closeOnce sync.Once
}

// Dial connects to the relay at addr (host:port), over TLS if opts.TLS is
// set, and logs in as id.
func Dial(ctx context.Context, addr, id string, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if opts.TLS != nil {
		tc := tls.Client(conn, opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	c, err := New(conn, id, opts)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// New logs in as id over an established connection and returns the Client,
// which owns conn from then on.
func New(conn net.Conn, id string, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	login, err := protocol.AppendLogin(nil, id)
	if err != nil {
		return nil, err
	}
	maxPayload := opts.MaxPayload
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	c := &Client{
		conn:   conn,
		id:     id,
		done:   make(chan struct{}),
		hbDone: make(chan struct{}),
		r:      protocol.NewReader(bufio.NewReaderSize(conn, bufferSize(opts.ReadBufferSize, protocol.MinReadBuffer)), protocol.Fixed(maxPayload)),
		bw:     bufio.NewWriterSize(conn, bufferSize(opts.WriteBufferSize, 16)),
	}
	if _, err := conn.Write(login); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	interval := opts.Heartbeat
	if interval == 0 {
		interval = DefaultHeartbeat
	}
	if interval > 0 {
		go c.heartbeats(interval)
	} else {
		close(c.hbDone)
	}
	return c, nil
}

func bufferSize(n, least int) int {
	if n <= 0 {
		return defaultBufferSize
	}
	return max(n, least)
}

// ID returns the ClientID the client logged in with.
func (c *Client) ID() string { return c.id }

// Send sends payload to the client logged in as to, and flushes.
func (c *Client) Send(to string, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.queueLocked(to, payload); err != nil {
		return err
	}
	return c.flushLocked()
}

// Queue buffers a frame for to without flushing; Flush (or a later Send)
// writes it. Queueing many frames and flushing once sends them in few
// syscalls.
func (c *Client) Queue(to string, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.queueLocked(to, payload)
}

// Flush writes every queued frame.
func (c *Client) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// Heartbeat sends a heartbeat now. The server forwards it to nobody; it only
// keeps the connection from timing out.
func (c *Client) Heartbeat() error { return c.Send("", nil) }

func (c *Client) queueLocked(to string, payload []byte) error {
	if c.werr != nil {
		return c.werr
	}
	// The head goes into the write buffer; the payload is copied there only
	// if it fits, and a large one is written from where it is.
	head, err := protocol.AppendTransferHead(c.wbuf[:0], c.id, to, len(payload))
	if err != nil {
		return err
	}
	c.wbuf = head[:0]
	if _, err := c.bw.Write(head); err != nil {
		c.werr = c.wrap(err)
		return c.werr
	}
	if _, err := c.bw.Write(payload); err != nil {
		c.werr = c.wrap(err)
	}
	return c.werr
}

func (c *Client) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = c.wrap(err)
	}
	return c.werr
}

// Recv waits for the next frame addressed to this client.
func (c *Client) Recv() (Message, error) {
	for {
		f, err := c.r.Next()
		if err != nil {
			return Message{}, c.wrap(err)
		}
		if f.Cmd != protocol.CmdTransfer || f.IsHeartbeat() {
			continue // the server sends nothing else; tolerate it anyway
		}
		return Message{From: f.ID, Payload: f.Payload}, nil
	}
}

// SetReadDeadline bounds how long Recv waits; see net.Conn.
func (c *Client) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// Close closes the connection. Frames already sent are delivered by the
// kernel; frames queued but not flushed are lost.
func (c *Client) Close() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.conn.Close()
		<-c.hbDone
	})
	return err
}

// CloseWrite flushes what is queued, then half-closes the connection: the
// server sees the end of the stream after the last frame, while Recv keeps
// working until the server closes its side.
func (c *Client) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.flushLocked(); err != nil {
		return err
	}
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.New("relay: connection does not support CloseWrite")
}

func (c *Client) heartbeats(every time.Duration) {
	defer close(c.hbDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if err := c.Heartbeat(); err != nil {
				return
			}
		}
	}
}

// wrap turns the errors of a connection the server ended into ErrServerClosed,
// keeping the cause in the chain (a TLS alert tells a refused client
// certificate from a kick).
func (c *Client) wrap(err error) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: %w", ErrServerClosed, err)
	case errors.As(err, &ne) && ne.Timeout():
		return err
	}
	var oe *net.OpError
	if errors.As(err, &oe) { // connection reset, broken pipe
		return fmt.Errorf("%w: %w", ErrServerClosed, err)
	}
	return err
}
