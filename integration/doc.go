// Package integration holds end-to-end tests that build the real binaries
// and run them as processes talking over real sockets, with faults injected
// (kill -9, cut tunnels, crashed engines). It has no code of its own.
package integration
