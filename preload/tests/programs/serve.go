// A small HTTP server for the seccomp supervisor's tests: Go makes its own
// system calls, so the preload never sees it.
//
// usage: serve HOST PORT
// Prints "listening HOST PORT PID" (the port the listener really has), then
// answers every request with "serve PID PORT\n".
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: serve HOST PORT")
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(os.Args[1], os.Args[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	fmt.Printf("listening %s %d %d\n", os.Args[1], port, os.Getpid())
	answer := fmt.Sprintf("serve %d %d\n", os.Getpid(), port)
	http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, answer)
	}))
}
