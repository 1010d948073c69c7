package marketfake

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// OneAppliance is one appliance an OpenNebula fake serves.
type OneAppliance struct {
	ID        string // _id.$oid; "" generates 24 hex digits
	Name      string
	Version   string
	Publisher string
	Type      string // "IMAGE" (when ""), "VMTEMPLATE" or "SERVICE_TEMPLATE"
	Format    string // "qcow2" when "" and Disk is set
	Disk      []byte // the file of an IMAGE; its size field is VirtualSize
	// VirtualSize is the file's "size" (the disk's virtual size); 0 uses
	// len(Disk).
	VirtualSize int64
	Template    string            // opennebula_template: a JSON document, kept a string
	Disks       []string          // VMTEMPLATE: IMAGE app names
	Roles       map[string]string // SERVICE_TEMPLATE: role → VMTEMPLATE app name
	// LegacyMD5 writes only the old top-level "md5" field instead of
	// "checksum": {"md5", "sha256"}.
	LegacyMD5 bool
}

// OpenNebula fakes OpenNebula's public marketplace.
type OpenNebula struct {
	control
	URL  string // the endpoint, ending in "/"
	apps []OneAppliance
}

// UserAgentPrefix is what the fake requires of a listing's User-Agent;
// other clients get an empty list, as the real server filters by version.
const UserAgentPrefix = "OpenNebula "

// NewOpenNebula serves apps on loopback.
func NewOpenNebula(t testing.TB, apps ...OneAppliance) *OpenNebula {
	t.Helper()
	o := &OpenNebula{control: newControl()}
	for _, a := range apps {
		if a.ID == "" {
			var b [12]byte
			_, _ = rand.Read(b[:])
			a.ID = hex.EncodeToString(b[:])
		}
		checkToken(t, "id", a.ID)
		if a.Type == "" {
			a.Type = "IMAGE"
		}
		if a.Format == "" && a.Disk != nil {
			a.Format = "qcow2"
		}
		if a.Disk != nil {
			o.put(o.filePath(a.ID, 0), a.Disk)
		}
		o.apps = append(o.apps, a)
	}
	srv := start(t, http.HandlerFunc(o.serve))
	o.URL = srv.URL + "/"
	return o
}

// Apps are the appliances served, with their IDs filled in.
func (o *OpenNebula) Apps() []OneAppliance { return append([]OneAppliance(nil), o.apps...) }

func (o *OpenNebula) filePath(id string, n int) string { return fmt.Sprintf("files/%s/%d", id, n) }

// Tamper changes the file of appliance id after the listing's sums were
// computed.
func (o *OpenNebula) Tamper(t testing.TB, id string) {
	t.Helper()
	o.tamper(t, o.filePath(id, 0))
}

func (o *OpenNebula) serve(w http.ResponseWriter, r *http.Request) {
	o.record(r)
	p := strings.Trim(r.URL.Path, "/")
	switch parts := strings.Split(p, "/"); {
	case p == "appliance":
		o.list(w, r)
	case len(parts) == 4 && parts[0] == "appliance" && parts[2] == "download":
		n, err := strconv.Atoi(parts[3])
		if err != nil {
			http.NotFound(w, r)
			return
		}
		// The real server answers with a redirect to the file's store.
		http.Redirect(w, r, "/"+o.filePath(parts[1], n), http.StatusFound)
	default:
		o.serveFile(w, r)
	}
}

func (o *OpenNebula) list(w http.ResponseWriter, r *http.Request) {
	if o.failListing(w) {
		return
	}
	apps := []any{}
	if strings.HasPrefix(r.UserAgent(), UserAgentPrefix) {
		for _, a := range o.apps {
			if o.listed(a.ID) {
				apps = append(apps, o.appliance(a))
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"sEcho": 1, "appliances": apps})
}

func (o *OpenNebula) appliance(a OneAppliance) map[string]any {
	m := map[string]any{
		"_id": map[string]string{"$oid": a.ID}, "name": a.Name, "version": a.Version,
		"publisher": a.Publisher, "description": "marketfake appliance " + a.Name,
		"short_description": a.Name + " from marketfake", "tags": []string{"marketfake", "busybox"},
		"format": a.Format, "creation_time": 1764892800, "os-id": "Busybox", "os-release": "1.35",
		"os-arch": "x86_64", "hypervisor": "KVM", "opennebula_version": "6.10", "type": a.Type,
		"files": []any{},
	}
	if a.Template != "" {
		m["opennebula_template"] = a.Template
	}
	if a.Disks != nil {
		m["disks"] = a.Disks
	}
	if a.Roles != nil {
		m["roles"] = a.Roles
	}
	if a.Disk != nil {
		size := a.VirtualSize
		if size == 0 {
			size = int64(len(a.Disk))
		}
		md := md5.Sum(a.Disk)
		f := map[string]any{"name": a.Name, "url": "https://images.example/" + a.ID + ".qcow2",
			"size": strconv.FormatInt(size, 10), "dev_prefix": "vd", "driver": a.Format, "type": "OS"}
		if a.LegacyMD5 {
			f["md5"] = hex.EncodeToString(md[:])
		} else {
			f["checksum"] = map[string]string{"md5": hex.EncodeToString(md[:]), "sha256": sum256(a.Disk)}
		}
		m["files"] = []any{f}
	}
	return m
}
