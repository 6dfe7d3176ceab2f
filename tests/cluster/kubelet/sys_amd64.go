package main

const (
	sysSetns = 308      // setns(2): not in package syscall for amd64
	oPath    = 0x200000 // O_PATH
)
