package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// handle acts on one frame; an error ends the connection (a protocol
// violation, or the server stopping while the frame waited for room).
func (c *conn) handle(f *protocol.Frame) error {
	if !c.loggedIn() {
		if f.Cmd != protocol.CmdLogin {
			return protocol.TransferBeforeLog
		}
		return c.login(f.ID)
	}
	if f.Cmd == protocol.CmdLogin {
		return protocol.SecondLogin
	}
	if string(f.ID) != c.id {
		if c.token == "" || string(f.ID) != c.token {
			return protocol.FromMismatch
		}
		// A client that signs in with a token may also send with the
		// token as FromClientID: receivers get the name it stands for.
		return c.forwardAs(f)
	}
	if len(f.To) == 0 {
		c.counts.heartbeats.add(1)
		return nil
	}
	return c.transfer(f, c.fr.Large())
}

// forwardAs forwards f, a transfer whose FromClientID is the token its
// sender signed in with, as if it carried the name the token stands for.
func (c *conn) forwardAs(f *protocol.Frame) error {
	if len(f.To) == 0 {
		c.counts.heartbeats.add(1)
		return nil
	}
	b := bufpool.Get(protocol.TransferLen(len(c.id), len(f.To), len(f.Payload)))
	defer bufpool.Put(b)
	raw, err := protocol.AppendTransfer(b.B[:0], c.idBytes, f.To, f.Payload)
	if err != nil {
		return err
	}
	b.B = raw
	g := *f
	g.Raw = raw
	return c.transfer(&g, nil)
}

// transfer counts and forwards a transfer frame; large is the pooled
// buffer that holds exactly f.Raw, if any, which a local receiver may take.
func (c *conn) transfer(f *protocol.Frame, large *bufpool.Buf) error {
	c.counts.framesIn.add(1)
	c.counts.bytesIn.add(uint64(len(f.Payload)))
	switch c.forward(f, large) {
	case registry.Delivered, registry.Sent:
		// Counted as forwarded when written, by the receiver.
	case registry.QueueFull:
		c.counts.refused[DropQueueFull].add(1)
	case registry.Gone:
		c.counts.refused[DropOffline].add(1)
	case closing:
		if c.srv.stopping.Load() {
			c.counts.refused[DropShutdown].add(1)
		} else {
			c.counts.refused[DropClosed].add(1)
		}
	case registry.Down:
		c.counts.refused[DropClusterDown].add(1)
	case registry.Wait: // the wait was cut short: this connection is closing
		if c.srv.stopping.Load() {
			c.counts.refused[DropShutdown].add(1)
			return errStopped
		}
		c.counts.refused[DropClosed].add(1)
		return errClosedWaiting
	}
	return nil
}

// errClosedWaiting ends a read loop whose connection was closed while a
// frame of it waited for room.
var errClosedWaiting = errors.New("closed while waiting for room")

var (
	errIDNotInCert = errors.New("client ID matches neither the certificate's CN nor a SAN")
	errNoKeys      = errors.New("client_id_from_token without [auth] keys")
)

// tokenError is a login token that did not verify. Its text is the
// auth package's reason, never the token.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "login token refused: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

func (c *conn) login(id []byte) error {
	if c.idFromCert && !allowedID(c.certIDs, id) {
		return errIDNotInCert
	}
	if c.ln.st.Load().cfg.ClientIDFromToken {
		tk := c.srv.tokens.Load()
		if tk == nil {
			return errNoKeys
		}
		sub, err := tk.keys.Verify(id, tk.audience, time.Now())
		if err != nil {
			return &tokenError{err}
		}
		c.token = string(id)
		id = []byte(sub)
		c.idBytes = id
	}
	c.id = string(id)
	// Registries record a login without waiting on the network (a
	// cluster announces it from its own goroutine), so no deadline: a
	// context with one would cost a timer at every login.
	prev, err := c.srv.reg.Register(context.Background(), c.id, c)
	if err != nil {
		id := c.id
		c.id = "" // not registered: nothing to unregister at teardown
		return &loginError{id: id, err: err}
	}
	c.fr.SetLoginOnly(false)
	c.idShared.Store(&c.id)
	c.loginAt.Store(time.Now().UnixNano())
	if prev != nil {
		c.srv.kicks.Add(1) // before the kicked connection can count its disconnect
		prev.Kick()
		if c.srv.debugging() {
			c.srv.log.Debug("kick", "listener", c.ln.name(), "client_id", c.id, "remote", c.remote.String())
		}
	}
	c.ln.logins.Add(1)
	if c.srv.debugging() {
		c.srv.log.Debug("login", "listener", c.ln.name(), "client_id", c.id, "remote", c.remote.String())
	}
	return nil
}

// loginError is a login the registry could not record.
type loginError struct {
	id  string
	err error
}

func (e *loginError) Error() string { return "login " + strconv.Quote(e.id) + ": " + e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }
