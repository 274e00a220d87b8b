// A small HTTP client for the seccomp supervisor's tests: Go makes its own
// system calls, so the preload never sees its connect.
//
// usage: get HOST PORT
// Prints the first line of the answer to GET / (fails after 5 s).
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: get HOST PORT")
		os.Exit(2)
	}
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Get("http://" + net.JoinHostPort(os.Args[1], os.Args[2]) + "/")
	if err != nil {
		fmt.Fprintln(os.Stderr, "get:", err)
		os.Exit(1)
	}
	line, _ := bufio.NewReader(response.Body).ReadString('\n')
	fmt.Print(line)
}
