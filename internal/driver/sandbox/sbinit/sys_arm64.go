//go:build linux

package sbinit

const sysSeccomp = 277
