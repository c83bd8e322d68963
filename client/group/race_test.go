//go:build race

package group

// raceEnabled: the race detector makes the fold about ten times slower, so the property
// test runs fewer cases under it (the plain run covers the full count).
const raceEnabled = true
