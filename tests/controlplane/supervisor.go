// supervisor.go owns the child processes of `up`: starting each component by re-executing
// this binary, sending its output to a log file, tying its life to ours, noticing when it
// dies, and stopping all of them in reverse start order.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stopGrace is how long a component gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// errInterrupted means `up` was asked to stop (SIGTERM/SIGINT) while waiting.
var errInterrupted = errors.New("interrupted")

type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	err     error         // exit status; valid after done is closed
}

type supervisor struct {
	logDir   string
	children []*child // in start order
	exited   chan *child
	signals  <-chan os.Signal
}

func newSupervisor(logDir string, signals <-chan os.Signal) *supervisor {
	return &supervisor{logDir: logDir, exited: make(chan *child, 8), signals: signals}
}

// start runs `/proc/self/exe <name> args...` with output to logDir/<name>.log; argv[0] is
// this binary's path, so `pgrep -f controlplane` finds the components too. The child
// gets SIGKILL if we die (Pdeathsig; the caller keeps its OS thread locked because that
// signal follows the forking thread) and its own process group, so a terminal's Ctrl-C
// reaches only us and we stop the components in order.
func (s *supervisor) start(name string, args ...string) error {
	cmd := exec.Command("/proc/self/exe", append([]string{name}, args...)...)
	if self, err := os.Executable(); err == nil {
		cmd.Args[0] = self
	}
	return s.run(name, cmd)
}

// run starts cmd as child name, as start describes.
func (s *supervisor) run(name string, cmd *exec.Cmd) error {
	logPath := filepath.Join(s.logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	s.children = append(s.children, c)
	go func() {
		c.err = cmd.Wait()
		close(c.done)
		s.exited <- c
	}()
	logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	return nil
}

// startIn runs this binary's subcommand sub as child name inside network namespace netns
// (`ip netns exec`, which also gives it a mount namespace of its own); like start, it dies
// with us.
func (s *supervisor) startIn(netns, name, sub string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return s.run(name, exec.Command("ip", append([]string{"netns", "exec", netns, self, sub}, args...)...))
}

// waitFor polls check until it succeeds, a child exits, a stop signal arrives or timeout
// passes. A child's death is returned as a *childExit; a timeout quotes component's log.
func (s *supervisor) waitFor(component string, timeout time.Duration, check func() error) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case c := <-s.exited:
			return &childExit{c}
		case sig := <-s.signals:
			logf("received %s while waiting for %s", sig, component)
			return errInterrupted
		case <-deadline:
			log := filepath.Join(s.logDir, component+".log")
			return fmt.Errorf("%s not ready after %s: %w; last lines of %s:\n%s",
				component, timeout, err, log, tail(log, 30))
		case <-tick.C:
		}
	}
}

// stopAll stops the children newest first: SIGTERM, then SIGKILL after stopGrace.
func (s *supervisor) stopAll() {
	for i := len(s.children) - 1; i >= 0; i-- {
		c := s.children[i]
		select {
		case <-c.done:
			continue
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			logf("stopped %s", c.name)
		case <-time.After(stopGrace):
			_ = c.cmd.Process.Kill()
			<-c.done
			logf("killed %s (no exit %s after SIGTERM)", c.name, stopGrace)
		}
	}
}

// childExit reports a component that died while `up` still needed it.
type childExit struct{ c *child }

func (e *childExit) Error() string {
	return fmt.Sprintf("%s exited unexpectedly (%v); last lines of %s:\n%s",
		e.c.name, e.c.err, e.c.logPath, tail(e.c.logPath, 30))
}

// tail returns the last n lines of a file, indented, for error reports.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("    ")
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" up: "+format+"\n", args...)
}
