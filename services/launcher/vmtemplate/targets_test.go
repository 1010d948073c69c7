package vmtemplate

import (
	"reflect"
	"strings"
	"testing"
)

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		text     string
		prefixes []string
		want     []string
		err      string
	}{
		{"defaults", "DISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2]\nDISK=[IMAGE_ID=3]", nil, []string{"vda", "vdb", "vdc"}, ""},
		{"explicit reserved first", "DISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2,TARGET=vda]", nil, []string{"vdb", "vda"}, ""},
		{"per prefix letters", "DISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2,DEV_PREFIX=sd]\nDISK=[IMAGE_ID=3,DEV_PREFIX=hd]\nDISK=[IMAGE_ID=4,DEV_PREFIX=sd]",
			nil, []string{"vda", "sda", "hda", "sdb"}, ""},
		{"image prefix", "DISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2]\nDISK=[IMAGE_ID=3,DEV_PREFIX=vd]",
			[]string{"", "hd", "sd"}, []string{"vda", "hda", "vdb"}, ""},
		{"gap filled", "DISK=[IMAGE_ID=1,TARGET=vdb]\nDISK=[IMAGE_ID=2]\nDISK=[IMAGE_ID=3]", nil, []string{"vdb", "vda", "vdc"}, ""},
		{"duplicate", "DISK=[IMAGE_ID=1,TARGET=sda]\nDISK=[IMAGE_ID=2,TARGET=sda]", nil, nil, "DISK 2: TARGET sda is already used by DISK 1"},
		{"bad image prefix", "DISK=[IMAGE_ID=1]", []string{"xvd"}, nil, `DISK 1: DEV_PREFIX "xvd" must be`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Targets(tc.prefixes)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Targets = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestTargetsRunOut(t *testing.T) {
	text := strings.Repeat("DISK=[IMAGE_ID=1]\n", 27)
	s, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Targets(nil); err == nil || !strings.Contains(err.Error(), "DISK 27: no free target left for prefix vd") {
		t.Fatalf("err = %v", err)
	}
}

func TestNextTarget(t *testing.T) {
	if got, err := NextTarget("hd", []string{"vda", "hda"}); err != nil || got != "hdb" {
		t.Fatalf("NextTarget = %q %v", got, err)
	}
	if _, err := NextTarget("zz", nil); err == nil {
		t.Fatal("bad prefix accepted")
	}
}
