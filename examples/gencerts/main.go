// Command gencerts writes a throwaway CA, a server certificate for
// localhost/127.0.0.1/::1 and client certificates for alice and bob, for the
// example TLS and mTLS configurations. Not for production.
//
//	go run ./examples/gencerts -dir examples/certs    (or: make certs)
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/relayd/relayd/internal/testcert"
)

func main() {
	dir := flag.String("dir", "examples/certs", "output directory")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	ca, err := testcert.NewCA("relayd example CA")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ca.Write(*dir, "ca"); err != nil {
		log.Fatal(err)
	}
	server, err := ca.Server("relayd")
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := server.Write(*dir, "server"); err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		leaf, err := ca.Client(id)
		if err != nil {
			log.Fatal(err)
		}
		if _, _, err := leaf.Write(*dir, id); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("wrote ca.pem, server.pem, server-key.pem, alice.pem, alice-key.pem, bob.pem, bob-key.pem to %s\n", *dir)
}
