package main

const (
	sysSetns = 268      // setns(2)
	oPath    = 0x200000 // O_PATH
)
