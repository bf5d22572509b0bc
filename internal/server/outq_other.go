//go:build !linux

package server

// unsentOn cannot tell outside Linux: a receiver whose socket was full for
// stall_timeout counts as stalled.
func unsentOn(uintptr) int { return -1 }
