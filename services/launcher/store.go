package launcher

import "strconv"

// Templates and VMs are kvstore records (pkg/kvstore) in their buckets,
// under decimal IDs from each bucket's counter ("next-id"); templates also
// have the bucket's unique-name index ("name.<base64url name>").

// idKey is an ID as it appears in keys, subjects and paths.
func idKey(id int64) string { return strconv.FormatInt(id, 10) }
