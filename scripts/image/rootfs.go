package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// rootfs writes the image's one layer: a tar of files copied from the
// host at their own paths, with every symlink on the way (Debian's /lib ->
// usr/lib, mkfs.ext4 -> mke2fs) recreated, so the dynamic loader and the
// libraries sit where the tools' ELF headers and ldd say.
type rootfs struct {
	tw   *tar.Writer
	seen map[string]bool // paths already in the tar
}

// writeRootfs writes the layer to path: layerlab at /usr/local/bin, the
// tools and their libraries, busybox and its applets, and the empty
// directories the Job mounts over or writes in.
func writeRootfs(path, binary string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	r := &rootfs{tw: tar.NewWriter(f), seen: map[string]bool{}}
	for _, d := range []string{"/usr/local/bin", "/etc", "/proc", "/sys", "/dev", "/run", "/results", "/scratch", "/var/lib/zfs"} {
		if err := r.dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := r.dir("/tmp", 0o1777); err != nil {
		return err
	}
	// zfs-fuse takes /var/lock/zfs/zfs_lock and listens on
	// /var/run/zfs/zfs_socket, and does not make their directories; as in
	// Debian, /var/run and /var/lock live in /run.
	for _, d := range []string{"/run/lock/zfs", "/run/zfs"} {
		if err := r.dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := r.symlink("/var/run", "../run"); err != nil {
		return err
	}
	if err := r.symlink("/var/lock", "../run/lock"); err != nil {
		return err
	}
	if err := r.file("/usr/local/bin/layerlab", binary); err != nil {
		return err
	}
	if err := r.data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"); err != nil {
		return err
	}
	if err := r.data("/etc/group", "root:x:0:\n"); err != nil {
		return err
	}
	for _, t := range tools {
		p, err := exec.LookPath(t)
		if err != nil {
			return fmt.Errorf("%s is not installed here (make setup installs it): %w", t, err)
		}
		if err := r.program(p); err != nil {
			return err
		}
	}
	// glibc loads libgcc_s at run time for pthread_exit and thread
	// cancellation (zfs-fuse's threads), which ldd does not show.
	for _, lib := range dlopened {
		p, err := libraryPath(lib)
		if err != nil {
			return err
		}
		if err := r.host(p, 0); err != nil {
			return err
		}
	}
	for _, c := range configs {
		if _, err := os.Stat(c); err == nil {
			if err := r.host(c, 0); err != nil {
				return err
			}
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox is not installed here (make setup installs busybox-static): %w", err)
	}
	if err := r.program(bb); err != nil {
		return err
	}
	for _, applet := range busyboxApplets {
		if err := r.symlink("/usr/local/bin/"+applet, bb); err != nil {
			return err
		}
	}
	// /bin/sh, which kubectl exec and shell scripts name by path: /bin as
	// the host has it (Debian's is a symlink to usr/bin).
	if err := r.host("/bin", 0); err != nil {
		return err
	}
	bin, err := filepath.EvalSymlinks("/bin")
	if err != nil {
		return err
	}
	if err := r.symlink(filepath.Join(bin, "sh"), bb); err != nil {
		return err
	}
	return r.tw.Close()
}

// program adds an executable and every shared library ldd resolves for
// it (none for a static one).
func (r *rootfs) program(path string) error {
	if err := r.host(path, 0); err != nil {
		return err
	}
	libs, err := sharedLibraries(path)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := r.host(l, 0); err != nil {
			return err
		}
	}
	return nil
}

// sharedLibraries returns the absolute paths ldd prints for path: the
// "name => /path (addr)" lines and the loader's "/path (addr)" line.
func sharedLibraries(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w\n%s", path, err, out)
	}
	var libs []string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: a library is missing on this host: %s", path, line)
		}
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if f := strings.Fields(line); len(f) > 0 && filepath.IsAbs(f[0]) {
			libs = append(libs, f[0])
		}
	}
	return libs, s.Err()
}

// libraryPath is where the dynamic loader finds lib, from its cache
// (ldconfig -p: "libgcc_s.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/...").
func libraryPath(lib string) (string, error) {
	out, err := exec.Command("ldconfig", "-p").Output()
	if err != nil {
		return "", fmt.Errorf("ldconfig -p: %w", err)
	}
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 4 && f[0] == lib && f[len(f)-2] == "=>" && strings.Contains(f[1], "x86-64") == (runtime.GOARCH == "amd64") {
			return f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("%s is not in the dynamic loader's cache (ldconfig -p); install it (Debian: libgcc-s1)", lib)
}

// host adds the host's path, following it the way the kernel would: a
// symlink met on the way (as a directory or as the file itself) is added
// as that symlink, and what it points to is added in turn.
func (r *rootfs) host(path string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: too many levels of symbolic links", path)
	}
	parts := strings.Split(strings.Trim(filepath.Clean(path), "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		rest := filepath.Join(parts[i+1:]...)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if err := r.symlink(next, target); err != nil {
				return err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return r.host(filepath.Join(target, rest), depth+1)
		case fi.IsDir():
			if err := r.dir(next, 0o755); err != nil {
				return err
			}
			cur = next
		case fi.Mode().IsRegular() && rest == "":
			return r.file(next, next)
		default:
			return fmt.Errorf("%s: neither a directory, a regular file nor a symlink", next)
		}
	}
	return nil
}

// dir adds a directory and its parents.
func (r *rootfs) dir(path string, mode int64) error {
	if path == "/" || r.seen[path] {
		return nil
	}
	if err := r.dir(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	r.seen[path] = true
	return r.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(path, "/") + "/", Mode: mode, ModTime: epoch})
}

func (r *rootfs) symlink(path, target string) error {
	if r.seen[path] {
		return nil
	}
	if err := r.dir(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	r.seen[path] = true
	return r.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(path, "/"), Linkname: target, Mode: 0o777, ModTime: epoch})
}

// file adds the host file src at path, keeping its permission bits.
func (r *rootfs) file(path, src string) error {
	if r.seen[path] {
		return nil
	}
	if err := r.dir(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r.seen[path] = true
	if err := r.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path, "/"), Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: epoch}); err != nil {
		return err
	}
	_, err = io.Copy(r.tw, f)
	return err
}

func (r *rootfs) data(path, content string) error {
	if err := r.dir(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	r.seen[path] = true
	if err := r.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path, "/"), Mode: 0o644, Size: int64(len(content)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := io.WriteString(r.tw, content)
	return err
}
