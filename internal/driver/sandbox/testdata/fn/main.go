// Command fn is the sandbox driver's test function: an http-contract
// program whose behaviour is chosen by its first argument (the conformance
// behaviours), plus endpoints that try to escape or abuse the sandbox.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	behaviour := "hello"
	if len(os.Args) > 1 {
		behaviour = os.Args[1]
	}
	if behaviour == "exit-at-start" {
		fmt.Fprintln(os.Stderr, "boom at start")
		os.Exit(3)
	}
	switch behaviour {
	case "ignore-term":
		signalIgnoreTerm()
	case "term-cleanup":
		cleanUpOnTerm(200 * time.Millisecond)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch behaviour {
		case "hello", "term-cleanup":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello")
		case "echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Echo-Method", r.Method)
			w.Header().Set("X-Echo-Path", r.URL.Path)
			w.Header().Set("X-Echo-Query", r.URL.RawQuery)
			w.Header().Set("X-Echo-Test", r.Header.Get("X-Test"))
			w.Write(body)
		case "loop", "ignore-term":
			for {
			}
		case "oom":
			var keep [][]byte
			for {
				b := make([]byte, 1<<20)
				for i := range b {
					b[i] = 1
				}
				keep = append(keep, b)
			}
		case "crash":
			fmt.Fprintln(os.Stderr, "boom")
			os.Exit(2)
		case "env":
			io.WriteString(w, os.Getenv("GREETING"))
		case "stderr":
			fmt.Fprintln(os.Stderr, "a line for the logs")
			io.WriteString(w, "ok")
		case "abuse":
			abuse(w, r)
		default:
			http.Error(w, "unknown behaviour "+behaviour, 500)
		}
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func signalIgnoreTerm() { syscallIgnore(syscall.SIGTERM) }

// abuse runs one escape or abuse attempt and reports its outcome as text:
// "ok ..." when the operation succeeded, "err ..." with the error otherwise.
func abuse(w http.ResponseWriter, r *http.Request) {
	arg := r.URL.Query().Get("arg")
	report := func(err error, okMsg string) {
		if err != nil {
			fmt.Fprintf(w, "err %v", err)
			return
		}
		fmt.Fprintf(w, "ok %s", okMsg)
	}
	switch r.URL.Path {
	case "/read":
		b, err := os.ReadFile(arg)
		report(err, fmt.Sprintf("%d bytes", len(b)))
	case "/cat":
		b, err := os.ReadFile(arg)
		report(err, string(b))
	case "/write":
		report(os.WriteFile(arg, []byte("x"), 0o644), "written")
	case "/ls":
		ents, err := os.ReadDir(arg)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		report(err, strings.Join(names, " "))
	case "/dial":
		c, err := net.DialTimeout("tcp", arg, time.Second)
		if c != nil {
			c.Close()
		}
		report(err, "connected")
	case "/ifaces":
		ifs, err := net.Interfaces()
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		report(err, strings.Join(names, " "))
	case "/forkbomb":
		var err error
		n := 0
		var cmds []*exec.Cmd
		for ; n < 5000; n++ {
			c := exec.Command("/usr/bin/sleep", "30")
			if err = c.Start(); err != nil {
				break
			}
			cmds = append(cmds, c)
		}
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		report(err, fmt.Sprintf("started %d processes", n))
	case "/fill":
		f, err := os.Create("/tmp/fill")
		if err == nil {
			buf := make([]byte, 1<<20)
			for err == nil {
				_, err = f.Write(buf)
			}
			f.Close()
			os.Remove("/tmp/fill")
		}
		report(err, "never full")
	case "/mount":
		report(syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, ""), "mounted")
	case "/ptrace":
		_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_ATTACH, 1, 0)
		var err error
		if e != 0 {
			err = e
		}
		report(err, "attached")
	case "/setuid":
		report(syscall.Setuid(0), "uid 0")
	case "/unshare":
		report(syscall.Unshare(syscall.CLONE_NEWUSER), "unshared")
	case "/status":
		b, err := os.ReadFile("/proc/self/status")
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") || strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "NoNewPrivs") || strings.HasPrefix(l, "Seccomp:") {
				keep = append(keep, l)
			}
		}
		report(err, strings.Join(keep, "\n"))
	default:
		http.Error(w, "unknown abuse", 404)
	}
}
