package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

const manifestYAML = "name: hello\nisolation: wasm\nmodule: hello.wasm\n"

// writeTree creates files under dir; a name ending in "/" is a directory,
// a value starting with "#!" is made executable.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := fs.FileMode(0o600) // Pack normalises to 0644
		if strings.HasPrefix(content, "#!") {
			mode = 0o700 // and this to 0755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns every file and directory below dir with its mode.
func readTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			out[filepath.ToSlash(rel)+"/"] = fi.Mode().String()
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = fi.Mode().String() + " " + string(b)
		default:
			out[filepath.ToSlash(rel)] = "unexpected " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func pack(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPackUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"hearth.yaml":         manifestYAML,
		"hello.wasm":          "\x00asm",
		"bin/server":          "#!/bin/sh\necho hi\n",
		"static/css/site.css": "body{}",
		"empty/":              "",
		".git/config":         "secret",
		"sub/.git/HEAD":       "ref",
		"a-very-long-name/" + strings.Repeat("x", 200): "long",
	})
	if err := os.Symlink("hello.wasm", filepath.Join(src, "alias.wasm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("static", filepath.Join(src, "assets")); err != nil {
		t.Fatal(err)
	}
	archive := pack(t, src)

	dst := filepath.Join(t.TempDir(), "out")
	info, err := Unpack(bytes.NewReader(archive), dst, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hearth.yaml":         "-rw-r--r-- " + manifestYAML,
		"hello.wasm":          "-rw-r--r-- \x00asm",
		"alias.wasm":          "-rw-r--r-- \x00asm",
		"bin/":                "drwxr-xr-x",
		"bin/server":          "-rwxr-xr-x #!/bin/sh\necho hi\n",
		"static/":             "drwxr-xr-x",
		"static/css/":         "drwxr-xr-x",
		"static/css/site.css": "-rw-r--r-- body{}",
		"assets/":             "drwxr-xr-x",
		"assets/css/":         "drwxr-xr-x",
		"assets/css/site.css": "-rw-r--r-- body{}",
		"empty/":              "drwxr-xr-x",
		"sub/":                "drwxr-xr-x",
		"a-very-long-name/":   "drwxr-xr-x",
		"a-very-long-name/" + strings.Repeat("x", 200): "-rw-r--r-- long",
	}
	got := readTree(t, dst)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s", k)
		}
	}
	if info.Files != 7 || info.Size != int64(len(manifestYAML)+4+4+18+6+6+4) || string(info.Manifest) != manifestYAML {
		t.Errorf("info = %+v", info)
	}

	m, err := ReadManifest(bytes.NewReader(archive), Limits{})
	if err != nil || string(m) != manifestYAML {
		t.Errorf("ReadManifest = %q, %v", m, err)
	}
}

func TestPackDeterministic(t *testing.T) {
	files := map[string]string{"hearth.yaml": manifestYAML, "b/c": "c", "a": "#!x", "z/": ""}
	d1, d2 := t.TempDir(), t.TempDir()
	writeTree(t, d1, files)
	writeTree(t, d2, files)
	// Different owners' umasks and times must not matter.
	if err := os.Chmod(filepath.Join(d2, "a"), 0o751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(d2, "b", "c"), epoch, epoch.AddDate(20, 0, 0)); err != nil {
		t.Fatal(err)
	}
	a, b, c := pack(t, d1), pack(t, d1), pack(t, d2)
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Error("same contents packed to different bytes")
	}
	tr := tar.NewReader(mustGunzip(t, a))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" {
			t.Errorf("%s: not normalised: %+v", hdr.Name, hdr)
		}
	}
	if got, want := strings.Join(names, " "), "a b/ b/c hearth.yaml z/"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
}

func mustGunzip(t testing.TB, b []byte) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return zr
}

func TestPackRejects(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		want  string
	}{
		{"symlink outside", func(dir string) error { return os.Symlink("/etc/passwd", filepath.Join(dir, "pw")) }, "points outside"},
		{"relative symlink outside", func(dir string) error { return os.Symlink("../..", filepath.Join(dir, "up")) }, "points outside"},
		{"dangling symlink", func(dir string) error { return os.Symlink("nope", filepath.Join(dir, "x")) }, "symlink x"},
		{"symlink loop", func(dir string) error { return os.Symlink(".", filepath.Join(dir, "self")) }, "symlink loop"},
		{"nested loop", func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				return err
			}
			return os.Symlink("..", filepath.Join(dir, "d", "up"))
		}, "symlink loop"},
		{"backslash name", func(dir string) error { return os.WriteFile(filepath.Join(dir, `a\b`), nil, 0o644) }, "backslash"},
		{"fifo", func(dir string) error { return mkfifo(filepath.Join(dir, "pipe")) }, "unsupported file type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"hearth.yaml": manifestYAML})
			if err := tt.setup(dir); err != nil {
				t.Skip(err)
			}
			err := Pack(dir, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Pack = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if err := Pack(filepath.Join(t.TempDir(), "missing"), io.Discard); err == nil {
		t.Error("Pack of a missing directory succeeded")
	}
}

// member is one entry of a hand-built archive.
type member struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) member {
	return member{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}

func dirEntry(name string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

var manifestMember = reg("hearth.yaml", manifestYAML)

func tarOf(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := m.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tgz(t testing.TB, ms ...member) []byte { return gz(t, tarOf(t, ms...)) }

// rawTar builds a one-entry tar by hand, for names archive/tar refuses to write.
func rawTar(name string, typ byte, body string) []byte {
	hdr := make([]byte, 512)
	copy(hdr, name)
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], []byte(octal(int64(len(body)), 12)))
	copy(hdr[136:], "00000000000\x00")
	hdr[156] = typ
	copy(hdr[257:], "ustar\x0000")
	copy(hdr[148:], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], octal(int64(sum), 7)+"\x00")
	data := append(hdr, body...)
	data = append(data, make([]byte, (512-len(body)%512)%512)...)
	return append(data, make([]byte, 1024)...)
}

func octal(n int64, width int) string {
	s := strings.Repeat("0", width-1) + strconvOctal(n)
	return s[len(s)-(width-1):] + "\x00"
}

func strconvOctal(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 8 {
		b = append([]byte{byte('0' + n%8)}, b...)
	}
	return string(b)
}

func hostileArchives(t testing.TB) []struct {
	name     string
	data     []byte
	lim      Limits
	want     string
	tooLarge bool
} {
	valid := tgz(t, manifestMember, reg("a.txt", "hello"))
	noise := make([]byte, 8<<10)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	big := tgz(t, manifestMember, reg("noise", string(noise)))
	truncated := big[:len(big)*3/4]
	badsum := append([]byte{}, valid...)
	badsum[len(badsum)-5] ^= 0xff // CRC-32 in the gzip trailer
	bomb := tgz(t, manifestMember, reg("zeros", strings.Repeat("\x00", 3<<20)))
	hardlink := member{tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: "hearth.yaml"}, ""}
	symlink := member{tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc"}, ""}
	many := []member{manifestMember}
	for i := range 5 {
		many = append(many, reg(strings.Repeat("f", i+1), "x"))
	}
	return []struct {
		name     string
		data     []byte
		lim      Limits
		want     string
		tooLarge bool
	}{
		{"empty input", nil, Limits{}, "archive is empty", false},
		{"not gzip", []byte("PK\x03\x04 this is a zip"), Limits{}, "not gzip-compressed", false},
		{"not tar", gz(t, bytes.Repeat([]byte("not a tar "), 200)), Limits{}, "not a tar archive", false},
		{"short non-tar", gz(t, []byte("hello")), Limits{}, "not a tar archive", false},
		{"truncated", truncated, Limits{}, "truncated", false},
		{"bad checksum", badsum, Limits{}, "corrupt", false},
		{"trailing garbage", append(append([]byte{}, valid...), "garbage after the archive"...), Limits{}, "corrupt", false},
		{"absolute path", tgz(t, manifestMember, reg("/etc/cron.d/x", "x")), Limits{}, `"/etc/cron.d/x": absolute paths are not allowed`, false},
		{"dot dot", tgz(t, manifestMember, reg("../evil", "x")), Limits{}, `".." is not allowed`, false},
		{"inner dot dot", tgz(t, manifestMember, reg("a/../../evil", "x")), Limits{}, `".." is not allowed`, false},
		{"harmless dot dot", tgz(t, manifestMember, reg("a/../b", "x")), Limits{}, `".." is not allowed`, false},
		{"backslash", tgz(t, manifestMember, reg(`..\evil`, "x")), Limits{}, "backslash", false},
		{"long component", tgz(t, manifestMember, reg(strings.Repeat("n", 256), "x")), Limits{}, "longer than 255", false},
		{"symlink", tgz(t, manifestMember, symlink), Limits{}, `symlinks are not allowed: "link"`, false},
		{"hardlink", tgz(t, manifestMember, hardlink), Limits{}, `hardlinks are not allowed: "hl"`, false},
		{"char device", tgz(t, manifestMember, member{tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, ""}), Limits{}, "device and fifo", false},
		{"block device", tgz(t, manifestMember, member{tar.Header{Typeflag: tar.TypeBlock, Name: "sda"}, ""}), Limits{}, "device and fifo", false},
		{"fifo", tgz(t, manifestMember, member{tar.Header{Typeflag: tar.TypeFifo, Name: "p"}, ""}), Limits{}, "device and fifo", false},
		{"duplicate", tgz(t, manifestMember, reg("hearth.yaml", "name: evil\n")), Limits{}, `"hearth.yaml": duplicate entry`, false},
		{"duplicate dir", tgz(t, manifestMember, dirEntry("d/"), dirEntry("d/")), Limits{}, "duplicate entry", false},
		{"duplicate after cleaning", tgz(t, manifestMember, reg("a", "1"), reg("./a", "2")), Limits{}, "duplicate entry", false},
		{"file then child", tgz(t, manifestMember, reg("a", "1"), reg("a/b", "2")), Limits{}, "is a file in this archive", false},
		{"dir then file", tgz(t, manifestMember, reg("a/b", "1"), reg("a", "2")), Limits{}, "is a directory in this archive", false},
		{"root as file", gz(t, rawTar(".", tar.TypeReg, "")), Limits{}, "archive root must be a directory", false},
		{"no manifest", tgz(t, reg("a.txt", "x")), Limits{}, "archive has no hearth.yaml at its root", false},
		{"manifest in subdir", tgz(t, reg("fn/hearth.yaml", manifestYAML)), Limits{}, "archive has no hearth.yaml at its root", false},
		{"manifest is a dir", tgz(t, dirEntry("hearth.yaml/"), reg("hearth.yaml/x", "")), Limits{}, "is not a regular file", false},
		{"manifest too large", tgz(t, reg("hearth.yaml", strings.Repeat("#", 64<<10+1))), Limits{}, "manifest is larger than 64 KiB", false},
		{"empty tar", gz(t, make([]byte, 1024)), Limits{}, "no hearth.yaml", false},
		{"too many files", tgz(t, many...), Limits{MaxFiles: 4}, "more than 4 entries", true},
		{"zip bomb", bomb, Limits{MaxUncompressed: 1 << 20}, "unpacks to more than 1048576 bytes", true},
		{"compressed too large", valid, Limits{MaxCompressed: 64}, "larger than 64 bytes compressed", true},
		{"bomb after end of archive", gz(t, append(tarOf(t, manifestMember), make([]byte, 8<<20)...)), Limits{MaxUncompressed: 1 << 20, MaxFiles: 10}, "decompresses to more than", true},
	}
}

func TestUnpackRejects(t *testing.T) {
	for _, tt := range hostileArchives(t) {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			_, err := Unpack(bytes.NewReader(tt.data), dst, tt.lim)
			checkRejection(t, "Unpack", err, tt.want, tt.tooLarge)
			if _, serr := os.Stat(dst); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("Unpack left %s behind: %v", dst, readTree(t, parent))
			}
			_, err = ReadManifest(bytes.NewReader(tt.data), tt.lim)
			checkRejection(t, "ReadManifest", err, tt.want, tt.tooLarge)
		})
	}
}

func checkRejection(t *testing.T, fn string, err error, want string, tooLarge bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s accepted it", fn)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("%s: %v does not match ErrInvalid", fn, err)
	}
	if errors.Is(err, ErrTooLarge) != tooLarge {
		t.Errorf("%s: %v: errors.Is(ErrTooLarge) = %v, want %v", fn, err, !tooLarge, tooLarge)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %q does not contain %q", fn, err, want)
	}
}

func TestUnpackCleansExistingDir(t *testing.T) {
	dst := t.TempDir() // exists and is empty
	data := tgz(t, manifestMember, reg("a/b/c", "x"), reg("z", strings.Repeat("z", 2<<20)))
	if _, err := Unpack(bytes.NewReader(data), dst, Limits{MaxUncompressed: 1 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if got := readTree(t, dst); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	// Still usable for a good archive.
	if _, err := Unpack(bytes.NewReader(tgz(t, manifestMember)), dst, Limits{}); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackTargetNotEmpty(t *testing.T) {
	dst := t.TempDir()
	writeTree(t, dst, map[string]string{"keep": "me"})
	_, err := Unpack(bytes.NewReader(tgz(t, manifestMember)), dst, Limits{})
	if err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want a non-ErrInvalid error", err)
	}
	if got := readTree(t, dst); len(got) != 1 {
		t.Errorf("touched existing contents: %v", got)
	}
}

func TestUnpackReadError(t *testing.T) {
	data := tgz(t, manifestMember, reg("big", strings.Repeat("x", 1<<20)))
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(errors.New("connection reset")))
	dst := filepath.Join(t.TempDir(), "out")
	_, err := Unpack(r, dst, Limits{})
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("err = %v, want the read error, not ErrInvalid", err)
	}
	if _, serr := os.Stat(dst); !errors.Is(serr, fs.ErrNotExist) {
		t.Error("left the target behind")
	}
}

func TestUnpackNormalises(t *testing.T) {
	exec := reg("./bin/run", "#!")
	exec.hdr.Mode = 0o4711 // setuid and odd bits dropped, exec kept
	private := reg("./secret", "s")
	private.hdr.Mode = 0o600
	data := gz(t, tarOf(t,
		member{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "abc"}}},
		dirEntry("./"),
		member{tar.Header{Typeflag: tar.TypeReg, Name: "./hearth.yaml", Mode: 0o664, Size: int64(len(manifestYAML)), Uid: 1000, Uname: "dev"}, manifestYAML},
		exec, private, dirEntry("./d//e/")))
	dst := filepath.Join(t.TempDir(), "out")
	info, err := Unpack(bytes.NewReader(data), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dst)
	want := map[string]string{
		"hearth.yaml": "-rw-r--r-- " + manifestYAML,
		"bin/":        "drwxr-xr-x",
		"bin/run":     "-rwxr-xr-x #!",
		"secret":      "-rw-r--r-- s",
		"d/":          "drwxr-xr-x",
		"d/e/":        "drwxr-xr-x",
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if info.Files != 3 {
		t.Errorf("info.Files = %d", info.Files)
	}
}

func TestCleanName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a", "a"}, {"./a", "a"}, {"a/", "a"}, {"a//b/./c/", "a/b/c"}, {".", ""}, {"./", ""},
		{"", "!"}, {"/a", "!"}, {"..", "!"}, {"a/..", "!"}, {"a\\b", "!"}, {"a\x00b", "!"},
		{strings.Repeat("a", 256), "!"}, {strings.Repeat("a/", 2048), "!"},
	} {
		got, err := cleanName(tt.in)
		if err != nil {
			got = "!"
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("cleanName(%q): %v is not ErrInvalid", tt.in, err)
			}
		}
		if got != tt.want {
			t.Errorf("cleanName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzUnpack(f *testing.F) {
	src := f.TempDir()
	writeTree(f, src, map[string]string{"hearth.yaml": manifestYAML, "bin/x": "#!", "d/e/f": "f"})
	f.Add(pack(f, src), false)
	f.Add(tarOf(f, manifestMember, reg("a/b", "c"), dirEntry("d/")), true)
	f.Add(tarOf(f, manifestMember, member{tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "../../x"}, ""}, reg("l/x", "y")), true)
	f.Add(tarOf(f, manifestMember, member{tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "/etc/passwd"}, ""}), true)
	f.Add(tarOf(f, reg("../x", "y"), manifestMember), true)
	f.Add(rawTar("hearth.yaml", tar.TypeReg, manifestYAML), true)
	for _, h := range hostileArchives(f) {
		if len(h.data) < 64<<10 {
			f.Add(h.data, false)
		}
	}
	lim := Limits{MaxCompressed: 256 << 10, MaxUncompressed: 256 << 10, MaxFiles: 50}
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		if compress {
			data = gz(t, data)
		}
		parent := t.TempDir()
		dst := filepath.Join(parent, "out")
		info, err := Unpack(bytes.NewReader(data), dst, lim)
		entries := onlyTarget(t, parent, "Unpack")
		m, merr := ReadManifest(bytes.NewReader(data), lim)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection %v does not match ErrInvalid", err)
			}
			if len(entries) != 0 {
				t.Fatalf("failed Unpack left %s behind", dst)
			}
			if merr == nil {
				t.Fatalf("ReadManifest accepted what Unpack rejected (%v)", err)
			}
			return
		}
		if merr != nil || !bytes.Equal(m, info.Manifest) {
			t.Fatalf("ReadManifest = %q, %v; Unpack found %q", m, merr, info.Manifest)
		}
		files := 0
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := d.Info()
			switch mode := fi.Mode(); {
			case mode.IsDir():
				if mode.Perm() != 0o755 {
					t.Errorf("%s: mode %v", p, mode)
				}
			case mode.IsRegular():
				files++
				if mode.Perm() != 0o755 && mode.Perm() != 0o644 {
					t.Errorf("%s: mode %v", p, mode)
				}
			default:
				t.Errorf("%s: unexpected type %v", p, mode)
			}
			return nil
		})
		if files != info.Files {
			t.Errorf("info.Files = %d, found %d", info.Files, files)
		}
	})
}

// onlyTarget fails if fn left anything in parent but its target "out", and
// returns what parent holds.
func onlyTarget(t *testing.T, parent, fn string) []os.DirEntry {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "out" {
			t.Fatalf("%s wrote %s next to the target", fn, e.Name())
		}
	}
	return entries
}
