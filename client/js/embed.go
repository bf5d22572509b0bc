// Package relaydjs ships the JavaScript client (relayd.js and frame.js) to
// Go programs that serve it to browsers, such as examples/web.
package relaydjs

import "embed"

// FS holds relayd.js and frame.js, the ES module and its frame codec.
//
//go:embed relayd.js frame.js
var FS embed.FS
