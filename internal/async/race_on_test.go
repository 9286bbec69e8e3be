//go:build race

package async_test

const raceEnabled = true
