//go:build race

package wsconn

// sync.Pool drops items at random under the race detector.
const raceEnabled = true
