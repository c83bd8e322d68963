//go:build race

package protocol_test

// raceEnabled is true under -race, where the 25 000-message test is too slow to be worth it.
const raceEnabled = true
