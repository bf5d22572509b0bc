// Command sendfile sends a file from one relay client to another through a
// running relayd, using the public client library.
//
//	go run ./examples/sendfile -addr 127.0.0.1:33333 -in photo.jpg -out copy.jpg
//
// It logs in twice, as "sendfile-rx" and "sendfile-tx", and streams the file
// in chunks. Each chunk carries its offset so the receiver can check that
// nothing was lost; an empty payload marks the end. The relay drops frames
// a receiver has no room for, so the sender waits for the receiver to
// acknowledge every few chunks (through the relay too).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/relayd/relayd/client"
)

const (
	chunk  = 64 << 10 // payload bytes per frame
	window = 32       // chunks in flight before waiting for an ack
)

func main() {
	addr := flag.String("addr", "127.0.0.1:33333", "relay address")
	in := flag.String("in", "", "file to send")
	out := flag.String("out", "", "where the receiver writes it")
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*addr, *in, *out); err != nil {
		log.Fatal(err)
	}
}

func run(addr, in, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rx, err := client.Dial(ctx, addr, "sendfile-rx", nil)
	if err != nil {
		return err
	}
	defer rx.Close()
	tx, err := client.Dial(ctx, addr, "sendfile-tx", nil)
	if err != nil {
		return err
	}
	defer tx.Close()

	// There is no login acknowledgement: ping the receiver until it answers.
	if err := handshake(tx, rx); err != nil {
		return err
	}

	received := make(chan error, 1)
	go func() { received <- receive(rx, out) }()

	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	buf := make([]byte, 8+chunk)
	var offset uint64
	for n := 0; ; n++ {
		if n > 0 && n%window == 0 { // wait for the receiver to catch up
			if _, err := tx.Recv(); err != nil {
				return fmt.Errorf("waiting for ack: %w", err)
			}
		}
		k, err := io.ReadFull(f, buf[8:])
		if k > 0 {
			binary.BigEndian.PutUint64(buf, offset)
			sum.Write(buf[8 : 8+k])
			if err := tx.Send("sendfile-rx", buf[:8+k]); err != nil {
				return err
			}
			offset += uint64(k)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Send("sendfile-rx", nil); err != nil { // end of file
		return err
	}
	if err := <-received; err != nil {
		return err
	}
	fmt.Printf("sent %d bytes, sha256 %x\n", offset, sum.Sum(nil))
	return nil
}

func handshake(tx, rx *client.Client) error {
	got := make(chan error, 1)
	go func() {
		_, err := rx.Recv()
		got <- err
	}()
	for i := 0; i < 100; i++ {
		if err := tx.Send("sendfile-rx", []byte("ping")); err != nil {
			return err
		}
		select {
		case err := <-got:
			if err != nil {
				return err
			}
			// Drain the extra pings still in flight, then tell the receiver
			// to start for real with a zero offset.
			return drainPings(rx)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("receiver never came online")
}

func drainPings(rx *client.Client) error {
	for {
		_ = rx.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		m, err := rx.Recv()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return rx.SetReadDeadline(time.Time{})
			}
			return err
		}
		if string(m.Payload) != "ping" {
			return fmt.Errorf("unexpected frame %q during handshake", m.Payload)
		}
	}
}

func receive(rx *client.Client, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	var want uint64
	for n := 1; ; n++ {
		m, err := rx.Recv()
		if err != nil {
			return err
		}
		if len(m.Payload) == 0 {
			return f.Sync()
		}
		if off := binary.BigEndian.Uint64(m.Payload); off != want {
			return fmt.Errorf("chunk at offset %d missing (got %d)", want, off)
		}
		if _, err := f.Write(m.Payload[8:]); err != nil {
			return err
		}
		want += uint64(len(m.Payload) - 8)
		if n%window == 0 {
			if err := rx.Send("sendfile-tx", []byte("ack")); err != nil {
				return err
			}
		}
	}
}
