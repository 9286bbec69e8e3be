//go:build linux

// Package sandbox is Hearth's Linux sandbox driver: it runs a function's
// program, in any language, inside fresh PID, mount, network, IPC and UTS
// namespaces, a cgroup with memory, pids and CPU limits, a read-only root
// assembled from the host's runtime directories or imported from the
// function's own tarball (a container image, see images.go), and a seccomp
// filter, as an unprivileged user with no capabilities: by default in a
// user namespace of the function's own that maps that user (nobody) to a
// host uid and gid no other sandbox has (see userns.go; where the kernel
// refuses user namespaces, New says so in its log and functions run as the
// host's nobody).
//
// A sandbox's PID 1 is a small init program (package sbinit, embedded
// pre-built from ./initbin; MaybeRunInit must still be called first thing in
// main for architectures without an embedded build). The init binds a root
// template the driver prepared once, makes the function's user namespace
// and waits for a task (so empty sandboxes can be pre-built in a pool), then
// mounts the function's directory and starts the function in that user
// namespace without privileges, staying as PID 1 to reap zombies and report
// the function's exit status. The init itself stays root in the host's user
// namespace, which owns the sandbox's other namespaces; it runs no code but
// its own.
//
// The function runs under SCHED_BATCH: the same fair share of CPU, within
// its cgroup's limit, but its wake-ups do not preempt the running task. A
// request written to it then leaves the gateway on its CPU until the
// gateway blocks on the answer, a moment later, rather than switching on
// every request. Measured on this project's 2-vCPU machines, with the
// program in a CPU cgroup behind a minimal forwarder: the program's CPU per
// request halves (87-93 µs to 44-48) and throughput rises 1.5×; being in
// any CPU cgroup had doubled it (33 µs at the root), by doubling the
// context switches per request.
//
// A timeout kills the whole sandbox at once. Stopping an instance (idle
// keep-alive expiry, removal, shutdown) is graceful instead, as in Lambda's
// and Knative's shutdown phase: the function's processes get SIGTERM and up
// to Config.StopGrace (2 s) to exit before the sandbox is killed.
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
// event's source forced to /functions/<name>, a per-function rate limit
// and the chain-depth loop guard of X-Hearth-Emit (see events.go).
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/hearthdev/hearth/internal/artifact"
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
	// caller) bound read-only as the root of every sandbox whose function
	// brings no root of its own (Spec.RootFS), instead of the host's runtime
	// directories. It must contain var/task, tmp, proc, dev and .oldroot
	// directories, not behind symbolic links.
	RootFS string
	// RootFSLimits bound the root file systems functions bring as tarballs
	// (Spec.RootFS), extracted under StateDir/rootfs. Zero fields: the
	// artifact.DefaultRootFSLimits.
	RootFSLimits artifact.RootFSLimits

	PidsMax          int64   // tasks per sandbox; default 512
	CPUs             float64 // CPU quota per sandbox; default 1
	NoFile           uint64  // open files per process; default 1024
	TmpBytes         int64   // size of /tmp; default min(64 MiB, memory/2)
	MaxResponseBytes int64   // largest response body; default 32 MiB
	UID, GID         int     // user the function runs as, inside its user namespace (on the host without one); default 65534 (nobody)
	// UserNSBase is the first of the 65536 host uids (and gids) the
	// functions' user namespaces map UID (GID) to, one per live sandbox
	// (see userns.go): a range no host user may own, like a subordinate id
	// range. Default 2^30 (1073741824); at least 65536.
	UserNSBase uint32
	// StopGrace is how long a stopped instance's function has between
	// SIGTERM and SIGKILL (keep-alive expiry, removal, shutdown; a timeout
	// kills at once). Default 2s; negative: no SIGTERM, kill at once.
	StopGrace time.Duration

	// Emitter, if set, publishes the events functions send to their
	// events endpoint ($HEARTH_EVENTS_API, events.go); nil: no endpoint.
	Emitter    Emitter
	EventRate  float64 // events per second one function may send (all its sandboxes); default 1000
	EventBurst int     // default 100

	reexecInit   bool // tests: re-execute this binary as init instead of the embedded one
	refuseUserNS bool // tests: the user namespace probe fails
}

const (
	defaultMemory     = 128 << 20
	defaultStopGrace  = 2 * time.Second
	defaultUserNSBase = 1 << 30
	userNSSize        = 65536 // host ids from UserNSBase on
	funcPort          = 8080
	lambdaPort        = 9001
)

// Driver runs functions in Linux sandboxes.
type Driver struct {
	cfg      Config
	log      *slog.Logger
	cg       *cgroupRoot
	root     string       // mount point for sandbox roots
	rootCfg  sbinit.Root  // the init's configuration for sandboxes on rootDir
	imageCfg sbinit.Root  // the same for sandboxes on a function's image: no binds
	template string       // the root template New built ("" with RootFS)
	images   *images      // root file systems functions bring (Spec.RootFS)
	userNS   bool         // functions get a user namespace (the probe passed)
	hostIDs  *hostIDs     // their host uids and gids
	rootDir  string       // the template, or cfg.RootFS
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

	eventsMu    sync.Mutex
	eventLimits map[string]*rate.Limiter // per function (events.go)
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
	if abs, err := filepath.Abs(cfg.StateDir); err == nil {
		cfg.StateDir = abs // an init opens it through /proc/PID/root
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
	switch {
	case cfg.StopGrace == 0:
		cfg.StopGrace = defaultStopGrace
	case cfg.StopGrace < 0:
		cfg.StopGrace = 0
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
	if cfg.UserNSBase == 0 {
		cfg.UserNSBase = defaultUserNSBase
	}
	if cfg.UID < 0 || int64(cfg.UID) >= math.MaxUint32 || cfg.GID < 0 || int64(cfg.GID) >= math.MaxUint32 {
		return nil, fmt.Errorf("sandbox: UID and GID must be between 1 and %d", uint32(math.MaxUint32-1))
	}
	if cfg.UserNSBase < userNSSize || cfg.UserNSBase > math.MaxUint32-userNSSize {
		return nil, fmt.Errorf("sandbox: UserNSBase must be between %d and %d", userNSSize, uint32(math.MaxUint32-userNSSize))
	}
	prefix := fmt.Sprintf("%s-%x", ownerToken(), time.Now().UnixNano()&0xffffff)
	rc := sbinit.Root{Mount: filepath.Base(root), Hostname: "hearth", NoFile: cfg.NoFile, Seccomp: filter,
		User: sbinit.User{UID: uint32(cfg.UID), GID: uint32(cfg.GID)}}
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	var template string
	rootDir := cfg.RootFS
	if cfg.RootFS == "" {
		template = filepath.Join(cfg.StateDir, "rootfs-"+prefix)
		undo = append(undo, func() { os.RemoveAll(template) })
		if rc.Binds, err = buildTemplate(template); err != nil {
			cleanup()
			return nil, fmt.Errorf("sandbox: building the root template: %w", err)
		}
		rootDir = template
	} else if err := checkRootFS(cfg.RootFS); err != nil {
		return nil, err
	}
	imgs, err := newImages(filepath.Join(cfg.StateDir, "rootfs"), cfg.RootFSLimits, cfg.Logger)
	if err != nil {
		cleanup()
		return nil, err
	}
	prog, err := openInitProgram(cfg.reexecInit)
	if err != nil {
		cleanup()
		return nil, err
	}
	undo = append(undo, prog.close)
	cg, err := openCgroupRoot(cfg.CgroupParent)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	undo = append(undo, cg.close)
	hostNS, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	d := &Driver{
		cfg:       cfg,
		log:       cfg.Logger,
		cg:        cg,
		root:      root,
		template:  template,
		images:    imgs,
		rootDir:   rootDir,
		init:      prog,
		hostNS:    hostNS,
		prefix:    prefix,
		instances: map[*Instance]struct{}{},
		poolStop:  make(chan struct{}),
		poolWake:  make(chan struct{}, 1),
		hostIDs:   newHostIDs(cfg.UserNSBase, userNSSize),
	}
	d.removeStale()
	d.rootCfg = rc
	d.imageCfg = rc
	d.imageCfg.Binds = nil
	if err := d.probeUserNS(); err != nil {
		d.log.Warn("sandbox: user namespaces unavailable; functions share one host uid instead of one each", "uid", cfg.UID, "err", err)
	} else {
		d.log.Info("sandbox: user namespaces on", "host_uids", fmt.Sprintf("%d-%d", cfg.UserNSBase, cfg.UserNSBase+userNSSize-1))
	}
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
			owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "rootfs-"), "-")
			if staleOwner(owner) {
				os.RemoveAll(dir)
			}
		}
	}
	for _, dir := range d.cg.children() {
		owner, _, ok := strings.Cut(filepath.Base(dir), "-")
		if ok && staleOwner(owner) {
			_ = unix.Rmdir(dir)
		}
	}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "sandbox" }

// Prepare validates a function version: a known protocol, its root file
// system tarball if it brings one (extracted now, see images.go) and a
// command whose executable exists in that root.
func (d *Driver) Prepare(ctx context.Context, spec driver.Spec) error {
	if err := validate(spec); err != nil {
		return err
	}
	root := d.cfg.RootFS
	if spec.RootFS != "" {
		var err error
		if root, _, err = d.images.acquire(ctx, spec, false); err != nil {
			return err
		}
	}
	return checkCommand(spec, root)
}

// Forget implements driver.Forgetter: the version's root file system tree,
// if it brought one, is removed unless another version or a live sandbox
// uses it.
func (d *Driver) Forget(spec driver.Spec) {
	if spec.RootFS != "" {
		d.images.forget(spec)
	}
}

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
	return nil
}

// checkCommand checks that spec's command exists and is executable in the
// sandbox's root: root is the directory of an imported root file system,
// or "" for the host-based template.
func checkCommand(spec driver.Spec, root string) error {
	cmd := spec.Command[0]
	var host string
	// lookup resolves an absolute path of the sandbox on the host.
	lookup := func(p string) (string, error) {
		if root == "" {
			return p, nil
		}
		return lookupIn(root, p)
	}
	switch {
	case strings.HasPrefix(cmd, "/var/task/"):
		host = filepath.Join(spec.Dir, strings.TrimPrefix(cmd, "/var/task/"))
	case filepath.IsAbs(cmd):
		if root == "" && !allowedHostPath(cmd) {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %s is outside the sandbox's directories (/usr, /bin, /sbin, /lib, /var/task)", cmd)
		}
		var err error
		if host, err = lookup(cmd); err != nil {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %s does not exist in the root file system", cmd)
		}
	case strings.Contains(cmd, "/"):
		rel := filepath.Clean(cmd)
		if !filepath.IsLocal(rel) {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %s leaves the function directory", cmd)
		}
		host = filepath.Join(spec.Dir, rel)
	default:
		for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
			p, err := lookup(dir + "/" + cmd)
			if err != nil {
				continue
			}
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				host = p
				break
			}
		}
		if host == "" {
			return driver.Errorf(driver.ErrInvalidArtifact, "command %q is not installed (looked in /usr/local/bin, /usr/bin, /bin)", cmd)
		}
	}
	st, err := os.Stat(host)
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

// startSandbox returns a running, ready sandbox for spec: a pooled or new
// one on the driver's root, or a new one on the function's own root file
// system.
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
	if spec.RootFS != "" {
		root, digest, err := d.images.acquire(ctx, spec, true)
		if err != nil {
			return nil, err
		}
		sb, err = d.spawnOn(ctx, spec, root, digest)
		if err != nil {
			d.images.release(digest)
			return nil, err
		}
	} else {
		if err := checkCommand(spec, d.cfg.RootFS); err != nil {
			return nil, err
		}
		if d.pool != nil {
			select {
			case sb = <-d.pool:
			default:
			}
		}
		if sb == nil {
			var err error
			if sb, err = d.spawn(ctx, spec.MemoryBytes, d.rootCfg, d.rootDir, ""); err != nil {
				return nil, err
			}
		}
	}
	if err := sb.specialise(ctx, spec); err != nil {
		sb.destroy()
		return nil, err
	}
	return sb, nil
}

// spawnOn starts a sandbox for spec on the image tree root (digest).
func (d *Driver) spawnOn(ctx context.Context, spec driver.Spec, root, digest string) (*sandbox, error) {
	if err := checkCommand(spec, root); err != nil {
		return nil, err
	}
	return d.spawn(ctx, spec.MemoryBytes, d.imageCfg, root, digest)
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
		sb, err := d.spawn(context.Background(), 0, d.rootCfg, d.rootDir, "")
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
// cgroups (directories under the cgroup parent), host ids of user
// namespaces, and sandbox roots mounted in the host's mount namespace
// (there should never be any). Tests use it after stopping everything;
// pooled sandboxes count until Close.
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
	if n = d.hostIDs.inUse(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d host ids of user namespaces handed out", n))
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
	}
	if spec.Protocol == "http" {
		t.Port = funcPort
	}
	return t
}

// PoolLen reports how many pre-built empty sandboxes are ready.
func (d *Driver) PoolLen() int { return len(d.pool) }
