package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// maxModule bounds one decompressed module (the largest in a distribution
// kernel are around 20 MiB).
const maxModule = 128 << 20

// moduleExts are the module file name endings, longest first.
var moduleExts = []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"}

// modName is a module's name from its file name: extension off, '-' as '_'
// (the kernel's own rule, so "crc32c-intel.ko" is crc32c_intel).
func modName(file string) string {
	base := filepath.Base(file)
	for _, ext := range moduleExts {
		if s, ok := strings.CutSuffix(base, ext); ok {
			base = s
			break
		}
	}
	return strings.ReplaceAll(base, "-", "_")
}

func isModuleFile(name string) bool {
	return slices.ContainsFunc(moduleExts, func(ext string) bool { return strings.HasSuffix(name, ext) })
}

// index knows a kernel's modules: where each lives, what it depends on,
// which names are built in, and (lazily) their aliases.
type index struct {
	dir     string
	path    map[string]string   // name → path relative to dir
	deps    map[string][]string // from modules.dep; nil: read each module's modinfo
	builtin map[string]bool
	aliases map[string][]string // alias → names; nil until needed
	bAlias  map[string]bool     // aliases of built-in modules; nil until needed
	info    map[string]modinfo  // read so far
}

// modinfo is what a module's .modinfo section says.
type modinfo struct {
	depends, softPre, softPost, aliases []string
}

func loadIndex(dir string) (*index, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("modules directory %s: %w", dir, notDir(err))
	}
	ix := &index{dir: dir, path: map[string]string{}, builtin: map[string]bool{}, info: map[string]modinfo{}}
	if err := ix.readDep(); err != nil {
		return nil, err
	}
	if ix.deps == nil {
		if err := ix.walk(); err != nil {
			return nil, err
		}
	}
	if err := readLines(filepath.Join(dir, "modules.builtin"), func(l string) {
		ix.builtin[modName(l)] = true
	}); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if len(ix.path) == 0 && len(ix.builtin) == 0 {
		return nil, fmt.Errorf("modules directory %s holds no modules and no modules.builtin", dir)
	}
	return ix, nil
}

func notDir(err error) error {
	if err == nil {
		return fmt.Errorf("not a directory")
	}
	return err
}

// readDep reads modules.dep ("kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko …"),
// which depmod writes when a package is installed; a package as shipped
// has none, and then walk and each module's modinfo stand in.
func (ix *index) readDep() error {
	deps := map[string][]string{}
	err := readLines(filepath.Join(ix.dir, "modules.dep"), func(l string) {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			return
		}
		name := modName(mod)
		ix.path[name] = mod
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, modName(d))
		}
		deps[name] = ds
	})
	switch {
	case os.IsNotExist(err):
		return nil
	case err != nil:
		return err
	}
	ix.deps = deps
	return nil
}

// walk finds every module file under dir.
func (ix *index) walk() error {
	return filepath.WalkDir(ix.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isModuleFile(d.Name()) {
			rel, _ := filepath.Rel(ix.dir, p)
			if _, dup := ix.path[modName(rel)]; !dup {
				ix.path[modName(rel)] = filepath.ToSlash(rel)
			}
		}
		return nil
	})
}

// modinfo reads (once) what module name's .modinfo says.
func (ix *index) modinfo(name string) (modinfo, error) {
	if mi, ok := ix.info[name]; ok {
		return mi, nil
	}
	mi, err := readModinfo(filepath.Join(ix.dir, filepath.FromSlash(ix.path[name])))
	if err != nil {
		return modinfo{}, fmt.Errorf("module %s: %w", name, err)
	}
	ix.info[name] = mi
	return mi, nil
}

// readModinfo reads a module's .modinfo; an uncompressed module is read
// in place (only its section headers and .modinfo), a compressed one whole.
func readModinfo(path string) (modinfo, error) {
	if strings.HasSuffix(path, ".ko") {
		f, err := os.Open(path)
		if err != nil {
			return modinfo{}, err
		}
		defer f.Close()
		return parseModinfo(f)
	}
	data, err := readModule(path)
	if err != nil {
		return modinfo{}, err
	}
	return parseModinfo(bytes.NewReader(data))
}

// dependencies are the modules name needs loaded first.
func (ix *index) dependencies(name string) ([]string, error) {
	if ix.deps != nil {
		return ix.deps[name], nil
	}
	mi, err := ix.modinfo(name)
	return mi.depends, err
}

// resolve turns a name that is neither a module nor built in (a softdep
// may name an alias, e.g. ext4's "pre: crc32c") into the modules that
// provide it.
func (ix *index) resolve(alias string) ([]string, error) {
	if ix.aliases == nil {
		ix.aliases = map[string][]string{}
		err := readLines(filepath.Join(ix.dir, "modules.alias"), func(l string) {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "alias" {
				ix.aliases[f[1]] = append(ix.aliases[f[1]], f[2])
			}
		})
		if os.IsNotExist(err) {
			err = ix.scanAliases()
		}
		if err != nil {
			return nil, err
		}
	}
	return ix.aliases[alias], nil
}

// scanAliases reads the aliases of every module (no modules.alias: the
// package was never installed).
func (ix *index) scanAliases() error {
	for name := range ix.path {
		mi, err := ix.modinfo(name)
		if err != nil {
			return err
		}
		for _, a := range mi.aliases {
			if !strings.ContainsAny(a, "*?[") { // device aliases are patterns; names are not
				ix.aliases[a] = append(ix.aliases[a], name)
			}
		}
	}
	for _, names := range ix.aliases {
		slices.Sort(names)
	}
	return nil
}

// readModule reads a module file, decompressed.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		zr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = zr
	case strings.HasSuffix(path, ".ko.zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = zr
	}
	data, err := io.ReadAll(io.LimitReader(r, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxModule {
		return nil, fmt.Errorf("%s: larger than %d MiB decompressed", path, maxModule>>20)
	}
	return data, nil
}

// parseModinfo reads the NUL-separated key=value strings of .modinfo.
func parseModinfo(module io.ReaderAt) (modinfo, error) {
	ef, err := elf.NewFile(module)
	if err != nil {
		return modinfo{}, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return modinfo{}, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return modinfo{}, err
	}
	var mi modinfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, modName(d))
				}
			}
		case "softdep":
			pre, post := parseSoftdep(v)
			mi.softPre, mi.softPost = append(mi.softPre, pre...), append(mi.softPost, post...)
		case "alias":
			mi.aliases = append(mi.aliases, v)
		}
	}
	return mi, nil
}

// parseSoftdep reads "pre: a b post: c".
func parseSoftdep(v string) (pre, post []string) {
	var cur *[]string
	for _, f := range strings.Fields(v) {
		switch f {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, f)
			}
		}
	}
	return pre, post
}

func readLines(path string, fn func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			fn(l)
		}
	}
	return sc.Err()
}

// builtinAliases are the aliases modules.builtin.modinfo gives the built-in
// modules ("crc32c_generic.alias=crc32c\x00…"), read once.
func (ix *index) builtinAliases() map[string]bool {
	if ix.bAlias != nil {
		return ix.bAlias
	}
	ix.bAlias = map[string]bool{}
	data, err := os.ReadFile(filepath.Join(ix.dir, "modules.builtin.modinfo"))
	if err != nil {
		return ix.bAlias // an old kernel without it: aliases resolve to modules only
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if _, v, ok := strings.Cut(string(kv), ".alias="); ok {
			ix.bAlias[v] = true
		}
	}
	return ix.bAlias
}
