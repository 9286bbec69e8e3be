//go:build linux

// Package sandbox is Hearth's Linux sandbox driver: it runs a function's
// program, in any language, inside fresh PID, mount, network, IPC and UTS
// namespaces, a cgroup with memory, pids and CPU limits, a read-only root
// assembled from the host's runtime directories, and a seccomp filter, as an
// unprivileged user with no capabilities.
//
// A sandbox's PID 1 is a small init program (package sbinit, embedded
// pre-built from ./initbin; MaybeRunInit must still be called first thing in
// main for architectures without an embedded build). The init binds a root
// template the driver prepared once, waits for a task (so empty sandboxes
// can be pre-built in a pool), then mounts the function's directory, drops
// privileges and starts the function, staying as PID 1 to reap zombies and
// report the function's exit status.
//
// Two contracts are served (see SPEC.md): "http", where the program listens
// on $PORT, and "lambda", where Hearth serves the AWS Lambda Runtime API at
// $AWS_LAMBDA_RUNTIME_API. In both the driver talks to the function over
// sockets it creates inside the sandbox's network namespace (see netns.go):
// no host port is opened, and the sandbox has only a loopback interface.
//
// With Config.Emitter set, every function (either contract) also gets an
// events endpoint at $HEARTH_EVENTS_API (127.0.0.1:9002, in the same way:
// a socket made inside the namespace when the sandbox is specialised,
// closed when it dies): POST /v1/events/{topic} publishes an event, as the
// gateway's route of the same name does but without a key, with the
// event's source forced to /functions/<name>, a per-sandbox rate limit
// and the chain-depth loop guard of X-Hearth-Emit (see events.go).
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

// Config configures the driver.
type Config struct {
	// StateDir holds the driver's working files (an empty directory the
	// sandboxes mount their root on). Default: $TMPDIR/hearth-sandbox.
	StateDir string
	Logger   *slog.Logger
	// CgroupParent is the cgroup, relative to the hierarchy root, under
	// which each sandbox gets its own cgroup. Default "hearth".
	CgroupParent string
	// Pool is the number of pre-built empty sandboxes kept ready.
	Pool int
	// RootFS, if set, is a directory (for example a tarball unpacked by the
	// caller) bound read-only as the sandbox root instead of the host's
	// runtime directories. It must contain var/task, tmp, proc, dev and
	// .oldroot directories.
	RootFS string

	PidsMax          int64   // tasks per sandbox; default 512
	CPUs             float64 // CPU quota per sandbox; default 1
	NoFile           uint64  // open files per process; default 1024
	TmpBytes         int64   // size of /tmp; default min(64 MiB, memory/2)
	MaxResponseBytes int64   // largest response body; default 32 MiB
	UID, GID         int     // user the function runs as; default 65534 (nobody)

	// Emitter, if set, publishes the events functions send to their
	// events endpoint ($HEARTH_EVENTS_API, events.go); nil: no endpoint.
	Emitter    Emitter
	EventRate  float64 // events per second one sandbox may send; default 1000
	EventBurst int     // default 100

	reexecInit bool // tests: re-execute this binary as init instead of the embedded one
}

const (
	defaultMemory = 128 << 20
	funcPort      = 8080
	lambdaPort    = 9001
)

// Driver runs functions in Linux sandboxes.
type Driver struct {
	cfg      Config
	log      *slog.Logger
	cg       *cgroupRoot
	root     string       // mount point for sandbox roots
	rootMsg  []byte       // the encoded sbinit.Root every init receives
	template string       // the root template New built ("" with RootFS)
	init     *initProgram // the init's executable
	hostNS   int          // the host's network namespace
	prefix   string
	seq      atomic.Uint64

	mu        sync.Mutex
	instances map[*Instance]struct{}
	closed    bool

	pool     chan *sandbox
	poolWake chan struct{} // buffered(1): a start finished, the pool may need a sandbox
	poolStop chan struct{}
	poolWG   sync.WaitGroup
	starting atomic.Int32 // starts in flight (the pool defers refills while > 0)
}

var (
	_ driver.Driver    = (*Driver)(nil)
	_ driver.Preparer  = (*Driver)(nil)
	_ driver.Forgetter = (*Driver)(nil)
)

// ErrUnsupported reports that this host cannot run sandboxes (not root, no
// cgroups); the message says why.
var ErrUnsupported = errors.New("sandbox: unsupported on this host")

// New creates a driver. It needs root (or CAP_SYS_ADMIN and a delegated
// cgroup) and Linux cgroups (v1 or v2).
func New(cfg Config) (*Driver, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root to create namespaces and cgroups", ErrUnsupported)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(os.TempDir(), "hearth-sandbox")
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "hearth"
	}
	if cfg.PidsMax == 0 {
		cfg.PidsMax = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.NoFile == 0 {
		cfg.NoFile = 1024
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = 32 << 20
	}
	if cfg.UID == 0 {
		cfg.UID = 65534
	}
	if cfg.GID == 0 {
		cfg.GID = 65534
	}
	if cfg.EventRate <= 0 {
		cfg.EventRate = DefaultEventRate
	}
	if cfg.EventBurst <= 0 {
		cfg.EventBurst = DefaultEventBurst
	}
	root := filepath.Join(cfg.StateDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: state dir: %w", err)
	}
	if err := probeMountAPI(cfg.StateDir); err != nil {
		return nil, err
	}
	filter, err := assembleFilter()
	if err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("%d-%x", os.Getpid(), time.Now().UnixNano()&0xffffff)
	rc := sbinit.Root{Mount: root, Template: cfg.RootFS, Hostname: "hearth", NoFile: cfg.NoFile, Seccomp: filter}
	var template string
	if cfg.RootFS == "" {
		template = filepath.Join(cfg.StateDir, "rootfs-"+prefix)
		if rc.Binds, err = buildTemplate(template); err != nil {
			os.RemoveAll(template)
			return nil, fmt.Errorf("sandbox: building the root template: %w", err)
		}
		rc.Template = template
	} else if err := checkRootFS(cfg.RootFS); err != nil {
		return nil, err
	}
	cleanup := func() {
		if template != "" {
			os.RemoveAll(template)
		}
	}
	prog, err := openInitProgram(cfg.reexecInit)
	if err != nil {
		cleanup()
		return nil, err
	}
	cg, err := openCgroupRoot(cfg.CgroupParent)
	if err != nil {
		prog.close()
		cleanup()
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	hostNS, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		cg.close()
		prog.close()
		cleanup()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	d := &Driver{
		cfg:       cfg,
		log:       cfg.Logger,
		cg:        cg,
		root:      root,
		rootMsg:   rc.Marshal(),
		template:  template,
		init:      prog,
		hostNS:    hostNS,
		prefix:    prefix,
		instances: map[*Instance]struct{}{},
		poolStop:  make(chan struct{}),
		poolWake:  make(chan struct{}, 1),
	}
	d.removeStale()
	if cfg.Pool > 0 {
		d.pool = make(chan *sandbox, cfg.Pool)
		d.poolWG.Add(1)
		go d.fillPool()
	}
	return d, nil
}

// probeMountAPI checks for the mount API the driver uses to hand a
// function's directory to a sandbox (Linux 5.12).
func probeMountAPI(dir string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err == nil {
		err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("%w: the new mount API (open_tree, mount_setattr; Linux 5.12) is unavailable: %v", ErrUnsupported, err)
	}
	return nil
}

// removeStale removes instance cgroups and root templates left by Hearth
// processes that died without cleaning up (their sandboxes died with them:
// Pdeathsig).
func (d *Driver) removeStale() {
	if d.template != "" {
		old, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "rootfs-*"))
		for _, dir := range old {
			pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "rootfs-"), "-")
			if _, err := os.Stat("/proc/" + pid); err != nil {
				os.RemoveAll(dir)
			}
		}
	}
	for _, dir := range d.cg.children() {
		pid, _, ok := strings.Cut(filepath.Base(dir), "-")
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		_ = unix.Rmdir(dir)
	}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "sandbox" }

// Prepare validates a function version: a known protocol and a command
// whose executable exists.
func (d *Driver) Prepare(ctx context.Context, spec driver.Spec) error {
	return validate(spec)
}

// Forget implements driver.Forgetter; the driver keeps no per-version state.
func (d *Driver) Forget(spec driver.Spec) {}

// ErrNetworkUnsupported is returned for specs that ask for outbound network.
var ErrNetworkUnsupported = errors.New("sandbox: outbound network (allow_net) is not supported yet")

func validate(spec driver.Spec) error {
	switch spec.Protocol {
	case "http", "lambda":
	default:
		return driver.Errorf(driver.ErrInvalidArtifact, "sandbox functions use protocol http or lambda, not %q", spec.Protocol)
	}
	if spec.AllowNet {
		return ErrNetworkUnsupported
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return driver.Errorf(driver.ErrInvalidArtifact, "command is empty")
	}
	st, err := os.Stat(spec.Dir)
	if err != nil || !st.IsDir() {
		return driver.Errorf(driver.ErrInvalidArtifact, "function directory %q is missing", spec.Dir)
	}
	cmd := spec.Command[0]
	var host string
	switch {
	case strings.HasPrefix(cmd, "/var/task/"):
		host = filepath.Join(spec.Dir, strings.TrimPrefix(cmd, "/var/task/"))
	case filepath.IsAbs(cmd):
		host = cmd
		if !allowedHostPath(cmd) {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %s is outside the sandbox's directories (/usr, /bin, /sbin, /lib, /var/task)", cmd)
		}
	case strings.Contains(cmd, "/"):
		rel := filepath.Clean(cmd)
		if !filepath.IsLocal(rel) {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %s leaves the function directory", cmd)
		}
		host = filepath.Join(spec.Dir, rel)
	default:
		for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
			if st, err := os.Stat(filepath.Join(dir, cmd)); err == nil && !st.IsDir() {
				host = filepath.Join(dir, cmd)
				break
			}
		}
		if host == "" {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %q is not installed (looked in /usr/local/bin, /usr/bin, /bin)", cmd)
		}
	}
	st, err = os.Stat(host)
	switch {
	case err != nil:
		return driver.Errorf(driver.ErrInvalidArtifact, "command %s does not exist", cmd)
	case st.IsDir():
		return driver.Errorf(driver.ErrInvalidArtifact, "command %s is a directory", cmd)
	case st.Mode()&0o111 == 0:
		return driver.Errorf(driver.ErrInvalidArtifact, "command %s is not executable (chmod +x)", cmd)
	}
	return nil
}

func allowedHostPath(p string) bool {
	for _, dir := range []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"} {
		if strings.HasPrefix(p, dir) {
			return true
		}
	}
	return false
}

// Start implements driver.Driver: it takes an empty sandbox from the pool
// (or builds one), turns it into an instance of spec and waits until the
// function is ready (listening on $PORT, or polling the Runtime API).
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	inst := &Instance{d: d, spec: spec}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, driver.ErrStopped
	}
	d.instances[inst] = struct{}{}
	d.mu.Unlock()
	sb, err := d.startSandbox(ctx, spec)
	if err != nil {
		d.forget(inst)
		return nil, err
	}
	inst.sb = sb
	return inst, nil
}

func (d *Driver) forget(inst *Instance) {
	d.mu.Lock()
	delete(d.instances, inst)
	d.mu.Unlock()
}

// startSandbox returns a running, ready sandbox for spec.
func (d *Driver) startSandbox(ctx context.Context, spec driver.Spec) (*sandbox, error) {
	d.starting.Add(1)
	defer func() {
		d.starting.Add(-1)
		select {
		case d.poolWake <- struct{}{}:
		default:
		}
	}()
	var sb *sandbox
	if d.pool != nil {
		select {
		case sb = <-d.pool:
		default:
		}
	}
	if sb == nil {
		var err error
		if sb, err = d.spawn(ctx, spec.MemoryBytes); err != nil {
			return nil, err
		}
	}
	if err := sb.specialise(ctx, spec); err != nil {
		sb.destroy()
		return nil, err
	}
	return sb, nil
}

// poolQuiet bounds how long a refill waits for starts in flight: building a
// sandbox competes for CPU with the function start it would slow down, so
// the pool refills between starts unless they never stop.
const poolQuiet = 50 * time.Millisecond

// fillPool keeps the pool of empty sandboxes full.
func (d *Driver) fillPool() {
	defer d.poolWG.Done()
	delay := 10 * time.Millisecond
	for {
		if len(d.pool) == cap(d.pool) || d.starting.Load() > 0 {
			timer := time.NewTimer(poolQuiet)
			select {
			case <-d.poolStop:
				timer.Stop()
				return
			case <-d.poolWake:
			case <-timer.C:
			}
			timer.Stop()
			if len(d.pool) == cap(d.pool) {
				continue
			}
		}
		select {
		case <-d.poolStop:
			return
		default:
		}
		sb, err := d.spawn(context.Background(), 0)
		if err != nil {
			d.log.Warn("sandbox pool: building a sandbox failed", "err", err)
			select {
			case <-d.poolStop:
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 10 * time.Millisecond
		select {
		case d.pool <- sb:
		case <-d.poolStop:
			sb.destroy()
			return
		}
	}
}

// Close stops every instance and pooled sandbox and removes the cgroups the
// driver created.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	insts := make([]*Instance, 0, len(d.instances))
	for in := range d.instances {
		insts = append(insts, in)
	}
	d.mu.Unlock()
	close(d.poolStop)
	d.poolWG.Wait()
	if d.pool != nil {
	drain:
		for {
			select {
			case sb := <-d.pool:
				sb.destroy()
			default:
				break drain
			}
		}
	}
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Go(func() { in.Stop(ctx) })
	}
	wg.Wait()
	d.cg.close()
	unix.Close(d.hostNS)
	d.init.close()
	if d.template != "" {
		os.RemoveAll(d.template)
	}
	return nil
}

// Leaks reports sandbox resources the driver still holds: its instance
// cgroups (directories under the cgroup parent), and sandbox roots mounted
// in the host's mount namespace (there should never be any). Tests use it
// after stopping everything; pooled sandboxes count until Close.
func (d *Driver) Leaks() error {
	var problems []string
	n := 0
	for _, dir := range d.cg.children() {
		if strings.HasPrefix(filepath.Base(dir), d.prefix+"-") {
			n++
		}
	}
	if n > 0 {
		problems = append(problems, fmt.Sprintf("%d cgroups under %s", n, d.cfg.CgroupParent))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), d.root) {
		problems = append(problems, "a sandbox root is mounted in the host namespace")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// taskFor turns spec into the init's task.
func (d *Driver) taskFor(spec driver.Spec) sbinit.Task {
	env := map[string]string{
		"PATH":   "/usr/local/bin:/usr/bin:/bin",
		"HOME":   "/tmp",
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
		"PORT":   strconv.Itoa(funcPort),
	}
	mem := spec.MemoryBytes
	if mem <= 0 {
		mem = defaultMemory
	}
	if spec.Protocol == "lambda" {
		delete(env, "PORT")
		for k, v := range map[string]string{
			"AWS_LAMBDA_RUNTIME_API":          fmt.Sprintf("127.0.0.1:%d", lambdaPort),
			"AWS_LAMBDA_FUNCTION_NAME":        spec.Function,
			"AWS_LAMBDA_FUNCTION_VERSION":     strconv.Itoa(spec.Version),
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.FormatInt(mem>>20, 10),
			"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
			"AWS_REGION":                      "local",
			"AWS_DEFAULT_REGION":              "local",
			"LAMBDA_TASK_ROOT":                "/var/task",
			"_HANDLER":                        spec.Command[0],
			"TZ":                              ":UTC",
		} {
			env[k] = v
		}
	}
	if d.cfg.Emitter != nil {
		env[EventsAPIEnv] = fmt.Sprintf("127.0.0.1:%d", eventsPort)
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	tmp := d.cfg.TmpBytes
	if tmp == 0 {
		tmp = min(int64(64<<20), mem/2)
	}
	t := sbinit.Task{
		Argv:     spec.Command,
		Env:      list,
		TmpBytes: tmp,
		UID:      uint32(d.cfg.UID),
		GID:      uint32(d.cfg.GID),
	}
	if spec.Protocol == "http" {
		t.Port = funcPort
	}
	return t
}

// PoolLen reports how many pre-built empty sandboxes are ready.
func (d *Driver) PoolLen() int { return len(d.pool) }
