package render

// Image is the catalog's image record as the CLI shows it. It decodes the
// record of docs/design.md leniently (unknown keys are ignored, so a newer
// catalog does not break an older CLI) and encodes with every key the
// --json contract promises, even when empty.
type Image struct {
	ID          int               `json:"id"`
	Name        string            `json:"name"`
	User        string            `json:"user"`
	Group       string            `json:"group"`
	Permissions string            `json:"permissions,omitempty"`
	Datastore   string            `json:"datastore"`
	Type        string            `json:"type"`
	State       string            `json:"state"`
	Persistent  bool              `json:"persistent"`
	DevPrefix   string            `json:"dev_prefix,omitempty"`
	Target      string            `json:"target,omitempty"`
	Format      string            `json:"format"`
	Size        int64             `json:"size"`
	StoredSize  int64             `json:"stored_size"`
	SHA256      string            `json:"sha256"`
	Source      string            `json:"source"`
	Error       string            `json:"error"`
	RVMs        int               `json:"rvms"`
	VMs         []int64           `json:"vms,omitempty"` // the VMs using it (catalog image-use)
	Description string            `json:"description,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	Origin      string            `json:"origin,omitempty"`
	SagaID      string            `json:"saga_id,omitempty"`
	CloningIDs  []int64           `json:"cloning_ids,omitempty"` // the clones being copied from it
	Snapshots   []Snapshot        `json:"snapshots,omitempty"`   // internal qcow2 snapshots (persistent images)
	Lock        *Lock             `json:"lock,omitempty"`        // image lock; nil when unlocked
	CreatedAt   string            `json:"created_at"`            // RFC 3339
	UpdatedAt   string            `json:"updated_at"`            // RFC 3339
}

// Lock is an image's lock (image lock): its level (use, manage, admin,
// all), who locked it and when.
type Lock struct {
	Level    string `json:"level"`
	LockedBy string `json:"locked_by"`
	LockedAt string `json:"locked_at"` // RFC 3339
}
