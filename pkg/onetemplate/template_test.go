package onetemplate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []Attr
	}{
		{"empty", "", nil},
		{"only comments", "# hello\n   # indented\n\n", nil},
		{"quoted and bare", "NAME = \"alpine 3.20\"\nPATH=s3://b/k.qcow2\n", []Attr{
			{Name: "NAME", Value: "alpine 3.20"}, {Name: "PATH", Value: "s3://b/k.qcow2"}}},
		{"case-insensitive names", "name = x\nDev_Prefix = vd", []Attr{
			{Name: "NAME", Value: "x"}, {Name: "DEV_PREFIX", Value: "vd"}}},
		{"escapes", `DESCRIPTION = "say \"hi\" C:\path a\\b"`, []Attr{
			{Name: "DESCRIPTION", Value: `say "hi" C:\path a\b`}}},
		{"multi-line string", "SCRIPT = \"#!/bin/sh\necho hi\n\"\n", []Attr{
			{Name: "SCRIPT", Value: "#!/bin/sh\necho hi\n"}}},
		{"empty values", "A =\nB = \"\"\nC=", []Attr{
			{Name: "A"}, {Name: "B"}, {Name: "C"}}},
		{"trailing comment and CRLF", "TYPE = OS # the default\r\nSIZE = 10\r\n", []Attr{
			{Name: "TYPE", Value: "OS"}, {Name: "SIZE", Value: "10"}}},
		{"vector one line", `DISK = [ IMAGE_ID = 3, IMAGE_UNAME = "oneadmin" ]`, []Attr{
			{Name: "DISK", Vector: map[string]string{"IMAGE_ID": "3", "IMAGE_UNAME": "oneadmin"}}}},
		{"vectors multi-line, repeated", "DISK = [\n  image_id = 3,   # root\n  TARGET = vda\n]\nDISK=[IMAGE_ID=4,]\nNIC = [ ]\n", []Attr{
			{Name: "DISK", Vector: map[string]string{"IMAGE_ID": "3", "TARGET": "vda"}},
			{Name: "DISK", Vector: map[string]string{"IMAGE_ID": "4"}},
			{Name: "NIC", Vector: map[string]string{}}}},
		{"comma on the next line", "CONTEXT = [ NETWORK = \"YES\"\n , SSH_PUBLIC_KEY = \"$USER[SSH_PUBLIC_KEY]\" ]", []Attr{
			{Name: "CONTEXT", Vector: map[string]string{"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tpl.Attrs, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", tpl.Attrs, tc.want)
			}
			again, err := ParseString(tpl.String())
			if err != nil {
				t.Fatalf("canonical form does not parse: %v\n%s", err, tpl.String())
			}
			if !reflect.DeepEqual(again.Attrs, tpl.Attrs) {
				t.Fatalf("round trip changed the template:\n%s", tpl.String())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"NAME = x\nTYPE = OS\nPATH\n", `line 3, column 5: expected '=' after PATH, found the end of the line`},
		{"NAME = my image", `line 1, column 11: unexpected 'i' after the value of NAME (quote values`},
		{"KERNEL_CMD = console=ttyS0", `line 1, column 21: unexpected '=' after the value of KERNEL_CMD`},
		{"= 3", `line 1, column 1: expected an attribute name (letters, digits and '_'), found '='`},
		{"NAME = \"abc\nDESC = x", `line 1, column 8: the value of NAME opens a quote that is never closed`},
		{"DISK = [ IMAGE_ID = 3", `line 1, column 8: vector DISK is not closed with ']'`},
		{"DISK = [ IMAGE_ID = 3 TARGET = vda ]", `line 1, column 23: expected ',' or ']' after IMAGE_ID in vector DISK, found 'T'`},
		{"DISK = [ A = 1, A = 2 ]", `line 1, column 17: A appears twice in vector DISK`},
		{"DISK = [ A = [ B = 1 ] ]", `line 1, column 14: vector DISK: A cannot hold a vector`},
		{"DISK = [ 'x' = 1 ]", `line 1, column 10: expected a name in vector DISK`},
		{"DISK = [ A = 1 ] B = 2", `line 1, column 18: unexpected 'B' after the value of DISK`},
		{"ÄBC = 1", `line 1, column 1: expected an attribute name (letters, digits and '_'), found 'Ä'`},
		{"X = 1\n  \u00e9 = 2", `line 2, column 3:`},
	} {
		_, err := ParseString(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a SyntaxError", tc.in, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q:\n got  %s\n want %s…", tc.in, err, tc.want)
		}
	}
}

func TestParseReadError(t *testing.T) {
	_, err := Parse(iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	_, err = Parse(strings.NewReader(strings.Repeat("#", MaxSize+1)))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	tpl, err := ParseString(`NAME = a
DISK = [ IMAGE_ID = 1 ]
NAME = b
DISK = [ IMAGE_ID = 2 ]
TYPE = OS`)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tpl.Get("name"); !ok || v != "a" {
		t.Fatalf("Get = %q %v", v, ok)
	}
	if _, ok := tpl.Get("DISK"); ok {
		t.Fatal("Get returned a vector")
	}
	if _, ok := tpl.Get("MISSING"); ok {
		t.Fatal("Get found a missing attribute")
	}
	if d := tpl.Vectors("disk"); len(d) != 2 || d[0]["IMAGE_ID"] != "1" || d[1]["IMAGE_ID"] != "2" {
		t.Fatalf("Vectors = %v", d)
	}
	tpl.Set("name", "c")
	tpl.Set("persistent", "YES")
	tpl.Add("label", "x")
	tpl.AddVector("nic", map[string]string{"network": "default"})
	tpl.Del("type")
	want := `NAME = "c"
DISK = [
  IMAGE_ID = "1" ]
DISK = [
  IMAGE_ID = "2" ]
PERSISTENT = "YES"
LABEL = "x"
NIC = [
  NETWORK = "default" ]
`
	if got := tpl.String(); got != want {
		t.Fatalf("String:\n%s\nwant:\n%s", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"NAME = \"x\"\n",
		"DISK = [ IMAGE_ID = 3, IMAGE_UNAME = \"oneadmin\" ]\nDISK=[A=1]\n",
		"A =\n# c\nB = \"q\\\"\\\\\"\n",
		"X = \"multi\nline\" # c\n",
		"V = [\n a = b ,\n c = \"d e\" ,]\n",
		"E = [ ]",
		"bad = [",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		first, err := ParseString(in)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 || se.Column < 1 {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		out := first.String()
		second, err := ParseString(out)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\ninput: %q\ncanonical: %q", err, in, out)
		}
		if !reflect.DeepEqual(first.Attrs, second.Attrs) {
			t.Fatalf("round trip differs\ninput: %q\ncanonical: %q\nfirst:  %#v\nsecond: %#v", in, out, first.Attrs, second.Attrs)
		}
		if second.String() != out {
			t.Fatalf("canonical form is not stable: %q vs %q", out, second.String())
		}
	})
}
