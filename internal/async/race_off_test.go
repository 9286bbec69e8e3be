//go:build !race

package async_test

const raceEnabled = false
