package kernelregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/kernel-registry/deb"
	"github.com/slipway/slipway/services/kernel-registry/initrd"
	"github.com/slipway/slipway/services/kernel-registry/kernel"
)

// AttrRegistry marks the catalog images add creates, so the examiner of
// catalog events leaves them to add.
const AttrRegistry = "KERNEL_REGISTRY"

// imageCleanupTimeout bounds waiting for a failed add's catalog image to
// leave LOCKED so it can be deleted.
const imageCleanupTimeout = 3 * time.Minute

// errInvalid marks a command that is wrong as sent.
var errInvalid = worker.ErrInvalid

// retryable marks a failure of the store or the bus that another delivery
// may not meet.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// overdue turns the failure of a job that ran past its deadline into a
// final one, with a context to report it through (the job's has ended).
func overdue(ctx context.Context, err error) (context.Context, error) {
	if expired := bus.JobExpired(ctx); expired != nil {
		return context.WithoutCancel(ctx), &final{fmt.Errorf("%w: %w", expired, err)}
	}
	return ctx, err
}

// final marks an error no retry can fix, whatever it wraps.
type final struct{ error }

func (f *final) Unwrap() error { return f.error }

func isRetryable(err error) bool {
	var r *retryable
	var f *final
	return errors.As(err, &r) && !errors.Is(err, errInvalid) && !errors.As(err, &f)
}

// failureCode is the code of a failure for its failed event.
func failureCode(err error) string {
	switch {
	case errors.Is(err, errInvalid):
		return schemas.CodeInvalidCommand
	case errors.Is(err, kernel.ErrNotKernel), errors.Is(err, kernel.ErrTruncated), errors.Is(err, kernel.ErrArch),
		errors.Is(err, kernel.ErrCompression), errors.Is(err, kernel.ErrNoConfig), errors.Is(err, deb.ErrNotPackage),
		errors.Is(err, initrd.ErrNoInit):
		return schemas.CodeInvalidInput
	case blob.IsNotFound(err):
		return schemas.CodeSourceNotFound
	}
	code := bus.CodeOf(err)
	if code == schemas.CodeInternal && !isRetryable(err) {
		return schemas.CodeRefused
	}
	return code
}

// storeErr marks a store failure retryable unless the store's answer is
// final (no such object, denied).
func storeErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if blob.IsNotFound(err) {
		return err
	}
	return &retryable{err}
}

func (s *Service) handleAdd(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.KernelRegistryAdd
	if err := decode(m, &cmd); err != nil {
		s.publishFailed(ctx, m, cmdToken(m), err, schemas.Failure{})
		return bus.Terminal(err)
	}
	// A redelivery of an add that was done (its ack lost) announces the
	// kernel again, under the same event ID, instead of adding it twice.
	if k, done, err := s.addedBefore(ctx, m.Envelope.ID); err != nil {
		return err
	} else if done {
		return s.announceAdded(ctx, m, k)
	}
	j := &addJob{s: s, m: m, cmd: cmd, job: &job{source: cmd.Source}}
	j.job.Begin(m, 0, "") // no image until the add registers one, no phase until the download
	stop := s.jobs.StartSource(ctx, s.w, m, cmd.Source, j.job)
	defer stop()
	k, err := j.run(ctx)
	j.cleanup(err != nil)
	// A failure is final unless the store or the bus may do better next
	// time and no kernel was recorded; the staged source stays for the
	// next delivery until then.
	return s.w.Settle(ctx, m, err, worker.Settlement{
		Succeeded: func(ctx context.Context) error {
			s.deleteSource(cmd.Source, bus.UserOf(m))
			if err := s.announceAdded(ctx, m, k); err != nil {
				return err // the record is kept; say it now
			}
			s.log.Info("kernel added", "id", k.ID, "name", k.Name, "version", k.Version, "initrd", k.Initrd, "modules", k.Modules)
			return nil
		},
		Terminal: func(err error) bool { return !isRetryable(err) || j.kernelID != nil },
		Expired:  func(err, expired error) error { return &final{fmt.Errorf("%w: %w", expired, err)} },
		Cleanup: func(_ error, final bool) {
			if final {
				s.deleteSource(cmd.Source, bus.UserOf(m))
			}
		},
		Failed: func(ctx context.Context, err error, f schemas.Failure) {
			token := cmdToken(m)
			if j.kernelID != nil {
				token = strconv.FormatInt(*j.kernelID, 10)
			}
			if !worker.IsAttempt(f) {
				s.log.Warn("kernel-registry: add failed", "source", cmd.Source, "err", err)
			}
			f.Source = cmd.Source
			s.publishFailed(ctx, m, token, err, f)
		},
		TerminateLast: true,
		Attrs:         []any{"source", cmd.Source},
	})
}

// announceAdded publishes the added event of kernel k, added by command m.
func (s *Service) announceAdded(ctx context.Context, m *bus.Msg, k schemas.Kernel) error {
	_, err := s.bus.Event(ctx, schemas.EventKernelRegistryAdded, strconv.FormatInt(k.ID, 10), k,
		bus.CausedBy(m.Envelope), bus.WithID(envelope.StepID(m.Envelope.ID, schemas.EventKernelRegistryAdded)))
	return err
}

// decode validates a command against its schema and decodes it.
func decode(m *bus.Msg, v any) error {
	return worker.Decode(Name, m.Name, m, v)
}

// cmdToken is the failed event's id before any image exists.
func cmdToken(m *bus.Msg) string { return worker.CommandToken(m) }

// publishFailed says why a message could not be handled, completing f
// (from worker.Settle, with the attempt, or a bare one); the handler's
// error terminates the message unless f is an attempt that will be
// retried.
func (s *Service) publishFailed(ctx context.Context, m *bus.Msg, token string, err error, f schemas.Failure) {
	f.Code, f.Error, f.Command = failureCode(err), schemas.ErrorText(err.Error()), m.Subject
	f.Retryable = isRetryable(err) && f.Code != schemas.CodeDeadlineExceeded
	_, perr := s.bus.Event(ctx, "failed", token, f,
		bus.CausedBy(m.Envelope), bus.WithID(envelope.StepID(m.Envelope.ID, worker.FailedStep("failed", f))))
	if perr != nil {
		s.log.Error("kernel-registry: publish failed event", "err", perr, "cause", err)
	}
}

// deleteSource removes add's source when it is a kernel upload of user
// (the sender): a command naming another object, or another user's
// upload, must not make the service delete it.
func (s *Service) deleteSource(url, user string) {
	if s.uploads().CheckKernelUpload(url, user) == nil {
		s.deleteStaged(url)
	}
}

// uploads are the locations kernel uploads are checked against.
func (s *Service) uploads() blob.Locations { return blob.Locations{UploadBucket: s.cfg.UploadBucket} }

// deleteStaged removes an upload whatever ended the job.
func (s *Service) deleteStaged(url string) {
	if url == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), worker.CleanupTimeout)
	defer cancel()
	if err := s.store.DeleteURL(ctx, url); err != nil {
		s.log.Warn("kernel-registry: delete staged object", "url", url, "err", err)
	}
}

// addJob is one add command at work.
type addJob struct {
	s        *Service
	m        *bus.Msg
	cmd      schemas.KernelRegistryAdd
	dir      string
	staged   []string // objects staged for the catalog: deleted if the job fails
	vmlinux  string   // the kept vmlinux: deleted if the job fails
	images   []int64  // catalog images created: deleted if the job fails
	kernelID *int64
	job      *job // its progress
}

// prepared is a kernel examined and ready to register.
type prepared struct {
	path        string // the kernel file
	facts       kernel.Facts
	vmlinux     string // extracted from a bzImage, "" for an ELF
	initrd      string // built from a package's modules, "" without
	modules     int
	sha256      string
	defaultName string
	filename    string
}

func (j *addJob) run(ctx context.Context) (schemas.Kernel, error) {
	if err := j.s.uploads().CheckKernelUpload(j.cmd.Source, bus.UserOf(j.m)); err != nil {
		return schemas.Kernel{}, fmt.Errorf("%w: %w", errInvalid, err)
	}
	var err error
	if j.dir, err = os.MkdirTemp(j.s.w.Dir(), "add-*"); err != nil {
		return schemas.Kernel{}, &retryable{fmt.Errorf("work directory: %w", err)}
	}
	p, err := j.prepare(ctx)
	if err != nil {
		return schemas.Kernel{}, err
	}
	return j.register(ctx, p)
}

// prepare downloads the upload and does all the local work: unpack a
// package, examine the kernel, extract its vmlinux, build the initrd. A
// failure here leaves nothing in the catalog.
func (j *addJob) prepare(ctx context.Context) (*prepared, error) {
	p := &prepared{filename: j.cmd.Filename}
	if p.filename == "" {
		_, key, _ := blob.ParseURL(j.cmd.Source)
		p.filename = path.Base(key)
	}
	upload := filepath.Join(j.dir, "upload")
	j.job.SetPhase(schemas.KernelRegistryPhaseDownload, 0)
	if err := download(ctx, j.s.store, j.cmd.Source, upload, j.job.Update); err != nil {
		return nil, err
	}
	p.path, p.defaultName = upload, p.filename
	var modulesDir string
	if isPackage(upload) {
		j.job.SetPhase(schemas.KernelRegistryPhaseUnpack, 0)
		k, err := unpack(upload, filepath.Join(j.dir, "pkg"))
		if err != nil {
			return nil, err
		}
		os.Remove(upload) // the package is unpacked: free its space
		p.path, p.defaultName, modulesDir = k.Image, "vmlinuz-"+k.Version, k.ModulesDir
	}
	j.job.SetPhase(schemas.KernelRegistryPhaseExamine, 0)
	var err error
	if p.facts, err = inspectFile(p.path); err != nil {
		return nil, err
	}
	if err := j.examineVmlinux(p); err != nil {
		return nil, err
	}
	if modulesDir != "" {
		j.job.SetPhase(schemas.KernelRegistryPhaseInitrd, 0)
		if err := j.buildInitrd(p, modulesDir); err != nil {
			return nil, err
		}
	}
	if p.sha256, err = fileSHA256(p.path); err != nil {
		return nil, err
	}
	return p, nil
}

// examineVmlinux extracts a bzImage's vmlinux and takes the facts only the
// ELF can tell (PVH, embedded config).
func (j *addJob) examineVmlinux(p *prepared) error {
	if p.facts.Format != kernel.FormatBzImage {
		return nil
	}
	p.vmlinux = filepath.Join(j.dir, "vmlinux")
	vf, err := extractVmlinux(p.path, p.facts.Size, p.vmlinux)
	if err != nil {
		return err
	}
	mergeVmlinux(&p.facts, vf)
	return nil
}

// mergeVmlinux adds to a bzImage's facts what its vmlinux says.
func mergeVmlinux(f *kernel.Facts, vf kernel.Facts) {
	f.PVH, f.PVHEntry, f.Config = vf.PVH, vf.PVHEntry, vf.Config
	if f.Version == "" {
		f.Version = vf.Version
	}
}

func (j *addJob) buildInitrd(p *prepared, modulesDir string) error {
	p.initrd = filepath.Join(j.dir, "initrd.img")
	f, err := os.Create(p.initrd)
	if err != nil {
		return &retryable{err}
	}
	res, err := initrd.Build(f, initrd.Options{ModulesDir: modulesDir, Modules: j.s.cfg.Modules, Init: j.s.cfg.Initrd})
	if cerr := f.Close(); err == nil && cerr != nil {
		return &retryable{cerr}
	}
	if err != nil {
		return fmt.Errorf("build the initrd: %w", err)
	}
	p.modules = len(res.Modules)
	os.RemoveAll(modulesDir) // the modules are in the initrd now
	return nil
}

// register stages the files, creates the catalog images, keeps the
// vmlinux and records the kernel.
func (j *addJob) register(ctx context.Context, p *prepared) (schemas.Kernel, error) {
	j.job.SetPhase(schemas.KernelRegistryPhaseRegister, 0)
	prefix := "kernel-registry/" + uuid.NewString() + "/"
	kernelURL, err := j.stage(ctx, p.path, prefix+"vmlinuz")
	if err != nil {
		return schemas.Kernel{}, err
	}
	var initrdURL string
	if p.initrd != "" {
		if initrdURL, err = j.stage(ctx, p.initrd, prefix+"initrd.img"); err != nil {
			return schemas.Kernel{}, err
		}
	}
	name := firstOf(j.cmd.Name, p.defaultName)
	k := kernelRecord(p.facts, name, p.sha256)
	img, err := j.createImage(ctx, schemas.ImageCreate{
		Name: name, Type: schemas.ImageTypeKernel, Path: kernelURL, Origin: p.filename,
		Checksum:    "sha256:" + p.sha256,
		Description: fmt.Sprintf("Linux %s (%s, %s)", firstOf(p.facts.Version, "of unknown version"), p.facts.Format, p.facts.Arch),
		Attributes:  map[string]string{AttrRegistry: "add", "KERNEL_VERSION": p.facts.Version},
	})
	if err != nil {
		return k, err
	}
	j.kernelID, k.ID = &img.ID, img.ID
	if initrdURL != "" {
		rd, err := j.createImage(ctx, schemas.ImageCreate{
			Name: name + "-initrd", Type: schemas.ImageTypeRamdisk, Path: initrdURL, Origin: p.filename,
			Description: fmt.Sprintf("initrd for kernel %d (%s): slipway-initrd and %d modules", img.ID, name, p.modules),
			Attributes:  map[string]string{AttrRegistry: "add", "KERNEL_ID": strconv.FormatInt(img.ID, 10)},
		})
		if err != nil {
			return k, err
		}
		k.Initrd, k.Modules = &rd.ID, int64(p.modules)
	}
	if p.vmlinux != "" {
		if k.Vmlinux, err = j.keepVmlinux(ctx, p.vmlinux, img.ID); err != nil {
			return k, err
		}
	}
	k.Source, k.CreatedAt = schemas.KernelSourceAdd, time.Now().UTC().Format(time.RFC3339)
	if err := j.s.putKernel(ctx, k); err != nil {
		return k, err
	}
	if err := j.s.markAdded(ctx, j.m.Envelope.ID, k.ID); err != nil {
		return k, err
	}
	j.staged, j.images, j.vmlinux = nil, nil, "" // the catalog owns them now
	return k, nil
}

// kernelRecord is the KV record of a kernel examined as f.
func kernelRecord(f kernel.Facts, name, sha string) schemas.Kernel {
	k := schemas.Kernel{Name: name, Format: schemas.KernelFormat(f.Format), Arch: f.Arch, Version: f.Version,
		Pvh: f.PVH, PvhEntry: int64(f.PVHEntry), Firecracker: f.Firecracker, FirecrackerReason: f.FirecrackerReason,
		Compression: schemas.KernelCompression(f.Compression), Config: f.Config, Size: f.Size, SHA256: sha}
	return k
}

// stage uploads a file to the upload bucket for the catalog to import.
func (j *addJob) stage(ctx context.Context, file, key string) (string, error) {
	url, err := putFile(ctx, j.s.store, j.s.cfg.UploadBucket, key, file)
	if err != nil {
		return "", err
	}
	j.staged = append(j.staged, url)
	return url, nil
}

// keepVmlinux stores the extracted vmlinux beside the kernel's files.
func (j *addJob) keepVmlinux(ctx context.Context, file string, id int64) (string, error) {
	if err := j.s.store.EnsureBucket(ctx, j.s.cfg.FilesBucket); err != nil {
		return "", storeErr("files bucket", err)
	}
	url, err := putFile(ctx, j.s.store, j.s.cfg.FilesBucket, fmt.Sprintf("kernels/%d/vmlinux", id), file)
	if err != nil {
		return "", err
	}
	j.vmlinux = url
	return url, nil
}

// createImage asks the catalog for an image and waits for its ID.
func (j *addJob) createImage(ctx context.Context, req schemas.ImageCreate) (schemas.Image, error) {
	req.Datastore, req.Staged = j.s.cfg.FilesDatastore, true
	req.OnBehalfOf = bus.UserOf(j.m)
	ctx, cancel := context.WithTimeout(ctx, j.s.cfg.CallTimeout)
	defer cancel()
	m, err := j.s.bus.Call(ctx, schemas.ServiceCatalog, schemas.CommandCatalogImageCreate, req, []string{schemas.EventCatalogImageCreated}, bus.CausedBy(j.m.Envelope))
	if err != nil {
		if bus.IsCallError(err) {
			return schemas.Image{}, fmt.Errorf("the catalog refused the %s image %q: %w", req.Type, req.Name, err)
		}
		return schemas.Image{}, fmt.Errorf("create the %s image %q: %w", req.Type, req.Name, err)
	}
	var img schemas.Image
	if err := json.Unmarshal(m.Data, &img); err != nil {
		return img, fmt.Errorf("the catalog's image-created: %w", err)
	}
	j.images = append(j.images, img.ID)
	// The catalog now owns the staged object: it deletes it after the import.
	j.staged = removeURL(j.staged, req.Path)
	return img, nil
}

// cleanup removes what a failed job left: staged objects, the kept
// vmlinux, catalog images, and the work directory in every case.
func (j *addJob) cleanup(failed bool) {
	if j.dir != "" {
		os.RemoveAll(j.dir)
	}
	if !failed {
		return
	}
	for _, u := range j.staged {
		j.s.deleteStaged(u)
	}
	j.s.deleteStaged(j.vmlinux)
	for _, id := range j.images {
		j.s.deleteImage(id, j.m.Envelope)
	}
	if j.kernelID != nil {
		j.s.deleteKernel(*j.kernelID)
	}
}

// deleteImage asks the catalog to delete an image a failed add created.
// The catalog refuses while the image's import runs (LOCKED), so it asks
// again until the import is over or the cleanup's time is up.
func (s *Service) deleteImage(id int64, cause envelope.Envelope) {
	ctx, cancel := context.WithTimeout(context.Background(), imageCleanupTimeout)
	defer cancel()
	for {
		_, err := s.bus.Call(ctx, schemas.ServiceCatalog, schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: id}, []string{schemas.EventCatalogImageDeleted}, bus.CausedBy(cause))
		if err == nil || !bus.IsCallError(err) || bus.CodeOf(err) != schemas.CodeImageLocked {
			if err != nil {
				s.log.Warn("kernel-registry: delete the image of a failed add", "id", id, "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("kernel-registry: the image of a failed add is still importing: delete it later", "id", id)
			return
		case <-time.After(time.Second):
		}
	}
}

func removeURL(list []string, u string) []string {
	out := list[:0]
	for _, v := range list {
		if v != u {
			out = append(out, v)
		}
	}
	return out
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// unpack extracts a kernel package into dir.
func unpack(pkg, dir string) (deb.Kernel, error) {
	f, err := os.Open(pkg)
	if err != nil {
		return deb.Kernel{}, &retryable{err}
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return deb.Kernel{}, &retryable{err}
	}
	return deb.Extract(f, dir, deb.Limits{})
}
