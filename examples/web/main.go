// Command web serves the browser chat demo: this directory's page at / and
// the JavaScript client at /client/js/. relayd serves no files itself, so
// the demo brings its own small server.
//
//	go run ./cmd/relayd -c examples/web/relayd.toml
//	go run ./examples/web        # then open http://127.0.0.1:8081/ in two tabs
package main

import (
	"embed"
	"flag"
	"io/fs"
	"log"
	"net/http"

	relaydjs "github.com/relayd/relayd/client/js"
)

//go:embed index.html app.js
var page embed.FS

// handler serves the page and the client module.
func handler() http.Handler {
	js, _ := fs.Sub(relaydjs.FS, ".")
	mux := http.NewServeMux()
	mux.Handle("/client/js/", http.StripPrefix("/client/js/", http.FileServerFS(js)))
	mux.Handle("/", http.FileServerFS(page))
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to serve the demo on")
	flag.Parse()
	log.Printf("relayd chat demo on http://%s/ (relayd: go run ./cmd/relayd -c examples/web/relayd.toml)", *addr)
	log.Fatal(http.ListenAndServe(*addr, handler()))
}
