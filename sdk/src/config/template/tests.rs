use super::*;

fn data() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("HTTPIP", "10.0.2.2".to_string()),
        ("HTTPPort", "8123".to_string()),
        ("Name", "packer-demo".to_string()),
        ("SSHPublicKey", "ssh-ed25519 AAAA+b/c= me@host\n".to_string()),
    ])
}

fn ctx() -> Context {
    Context {
        user_variables: Some(BTreeMap::from([
            ("disk_size".to_string(), "20480".to_string()),
            ("name".to_string(), "deb".to_string()),
            ("empty".to_string(), String::new()),
            ("braces".to_string(), "{{ .HTTPIP }}".to_string()),
        ])),
        build_name: "qemu-a".to_string(),
        build_type: "qemu-rs".to_string(),
        template_path: "/srv/templates/debian.json".to_string(),
        packer_version: "1.6.6".to_string(),
        enable_env: false,
    }
}

/// Renders with the test context and the given data.
fn r(t: &str, data: &Data) -> Result<String, TemplateError> {
    render(t, &ctx(), data).map(|r| r.text)
}

fn plain(t: &str) -> String {
    r(t, &Data::strings(data())).unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

fn err(t: &str) -> String {
    match r(t, &Data::strings(data())) {
        Ok(out) => panic!("{t:?} rendered {out:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn variables_with_all_spacings_and_urlquery() {
    let t = Template::parse("http://{{ .HTTPIP }}:{{.HTTPPort}}/{{  .Name  }}.cfg").unwrap();
    assert_eq!(t.render(&data()).unwrap(), "http://10.0.2.2:8123/packer-demo.cfg");
    assert_eq!(t.variables(), vec!["HTTPIP", "HTTPPort", "Name"]);
    assert_eq!(plain("key={{ .SSHPublicKey | urlquery }}"), "key=ssh-ed25519+AAAA%2Bb%2Fc%3D+me%40host%0A");
    assert_eq!(query_escape("a~b-c_d.e é&"), "a~b-c_d.e+%C3%A9%26");
    assert_eq!(plain("{{ .Name | upper }} {{ .Name|upper|lower }}"), "PACKER-DEMO packer-demo");
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(plain("a   {{- .Name -}}   b"), "apacker-demob");
    assert_eq!(plain("a \n {{- /* a comment */ -}} \n b"), "ab");
    assert_eq!(plain("a {{/* c */}} b"), "a  b");
    assert_eq!(plain("x {{-3}} {{ 3 -}} y"), "x -3 3y");
    // "{{-3}}" is the number -3, not a trim marker.
    assert_eq!(plain("{{ \"a\" }}{{- \" b\" }}"), "a b");
    assert!(err("{{/* unterminated }}").contains("unclosed"), "{}", err("{{/* x }}"));
    assert!(err("{{/* c */ x}}").contains("comment ends before closing delimiter"));
}

#[test]
fn literals_strings_raw_numbers_chars() {
    assert_eq!(plain(r#"{{ "a\tb\x41\u00e9\101\"" }}"#), "a\tbAéA\"");
    assert_eq!(plain("{{ `raw \\n {{ not an action }}` }}"), "raw \\n {{ not an action }}");
    assert_eq!(
        plain("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ 1.5 }} {{ 1e3 }} {{ .5 }}"),
        "42 -7 31 15 5 1000 1.5 1000 0.5"
    );
    assert_eq!(plain("{{ 'a' }} {{ '\\n' }} {{ printf \"%c\" 'é' }}"), "97 10 é");
    assert_eq!(plain("{{ true }} {{ false }} {{ print nil }}"), "true false <nil>");
    assert!(err("{{ \"unterminated }}").contains("unterminated quoted string"));
    assert!(err("{{ 1x }}").contains("bad number syntax"));
    assert!(err("{{ \"\\q\" }}").contains("unknown escape"));
}

#[test]
fn pipelines_commands_and_parens() {
    assert_eq!(plain("{{ \"a-b-c\" | printf \"%s!\" | upper }}"), "A-B-C!");
    assert_eq!(plain("{{ printf \"%s-%s\" (upper .Name) (lower \"X\") }}"), "PACKER-DEMO-x");
    assert_eq!(plain("{{ (printf \"%d\" 3) }}"), "3");
    assert_eq!(plain("{{ . | len }}"), "4");
    assert!(err("{{ .Name | \"x\" }}").contains("non executable command in pipeline stage 2"));
    assert!(err("{{ .Name \"x\" }}").contains("is not a method but has arguments"));
    assert!(err("{{ \"a\" \"b\" }}").contains("can't give argument to non-function"));
    assert!(err("{{ shout .Name }}").contains("function \"shout\" not defined"));
    assert!(err("{{ }}").contains("missing value for command"));
    assert!(err("{{ (upper \"a\" }}").contains("unclosed left paren"), "{}", err("{{ (upper \"a\" }}"));
}

#[test]
fn control_structures() {
    assert_eq!(plain("{{ if eq .HTTPPort \"8123\" }}yes{{ else }}no{{ end }}"), "yes");
    assert_eq!(plain("{{ if eq .HTTPPort \"1\" }}a{{ else if .Name }}b{{ else }}c{{ end }}"), "b");
    assert_eq!(plain("{{ if user `empty` }}a{{ else if eq 1 2 }}b{{ else }}c{{ end }}"), "c");
    assert_eq!(plain("{{ with user `name` }}[{{ . }}]{{ else }}none{{ end }}"), "[deb]");
    assert_eq!(plain("{{ with user `empty` }}[{{ . }}]{{ else }}none{{ end }}"), "none");
    assert_eq!(plain("{{ with $x := user `name` }}{{ $x }}{{ . }}{{ end }}"), "debdeb");
    let list = Data::Value(Value::Map(BTreeMap::from([
        ("L".to_string(), Value::List(vec![Value::from("a"), Value::from("b")])),
        (
            "M".to_string(),
            Value::Map(BTreeMap::from([("k".to_string(), Value::Int(1)), ("j".to_string(), Value::Int(2))])),
        ),
        ("E".to_string(), Value::List(vec![])),
    ])));
    assert_eq!(r("{{ range .L }}<{{ . }}>{{ end }}", &list).unwrap(), "<a><b>");
    assert_eq!(r("{{ range $i, $e := .L }}{{ $i }}={{ $e }};{{ end }}", &list).unwrap(), "0=a;1=b;");
    assert_eq!(r("{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}", &list).unwrap(), "j2k1");
    assert_eq!(r("{{ range .E }}x{{ else }}empty{{ end }}", &list).unwrap(), "empty");
    assert_eq!(
        r("{{ index .L 1 }} {{ index .M \"k\" }} {{ index .M \"zz\" }} {{ len .L }}", &list).unwrap(),
        "b 1 <no value> 2"
    );
    assert_eq!(plain("{{ $x := \"v\" }}{{ $x }}{{ $x = \"w\" }}{{ $x }}"), "vw");
    assert!(err("{{ if .Name }}x").contains("without {{end}}"));
    assert!(err("{{ end }}").contains("unexpected {{end}}"));
    assert!(err("{{ else }}").contains("unexpected {{else}}"));
    assert!(err("{{ range \"s\" }}{{ end }}").contains("range can't iterate over s"));
    assert!(err("{{ define \"x\" }}{{ end }}").contains("not supported"));
    assert!(err("{{ $nope }}").contains("undefined variable: $nope"));
}

#[test]
fn builtins_like_go() {
    assert_eq!(plain("{{ and 1 0 2 }} {{ and 1 2 }} {{ or 0 \"\" }} {{ or 0 \"x\" }} {{ not 0 }}"), "0 2  x true");
    assert_eq!(
        plain("{{ eq 1 2 1 }} {{ ne \"a\" \"b\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge \"b\" \"a\" }}"),
        "true true true true false true"
    );
    assert!(err("{{ eq 1 \"1\" }}").contains("incompatible types for comparison"));
    assert_eq!(
        plain("{{ print 1 2 \"a\" 3 }}|{{ println \"a\" 1 }}|{{ printf \"%q %d %v %s\" \"x\" 5 true .Name }}"),
        "1 2a3|a 1\n|\"x\" 5 true packer-demo"
    );
    assert_eq!(plain("{{ len \"héllo\" }} {{ html \"<b>\" }} {{ js \"it's\" }}"), "6 &lt;b&gt; it\\'s");
    assert!(err("{{ not }}").contains("wrong number of args for not: want 1 got 0"));
    assert!(err("{{ call 1 }}").contains("not supported by qemu-rs"));
}

#[test]
fn packer_functions() {
    assert_eq!(plain("{{ user `disk_size` }}M {{ user \"name\" }}"), "20480M deb");
    assert_eq!(
        plain("{{ build_name }}/{{ build_type }}/{{ packer_version }}:{{ template_dir }}"),
        "qemu-a/qemu-rs/1.6.6:/srv/templates"
    );
    assert_eq!(plain("{{ template_dir }}"), "/srv/templates");
    assert_eq!(plain("{{ split \"a-b-c\" \"-\" 1 }} {{ split \"a,b\" \",\" 0 }}"), "b a");
    assert!(err("{{ split \"a-b\" \"-\" 5 }}")
        .contains("the substring 5 was unavailable using the separator value, -, only 2 values were found"));
    assert_eq!(plain("{{ replace \"a\" \"b\" 2 \"aaaa\" }} {{ replace_all \"a\" \"b\" \"aaaa\" }} {{ replace \"a\" \"b\" -1 \"aa\" }}"), "bbaa bbbb bb");
    assert_eq!(
        plain("{{ upper \"abc\" }} {{ lower \"ABC\" }} {{ clean_resource_name \"My Image_1.2\" }}"),
        "ABC abc my-image-1-2"
    );
    assert_eq!(plain("{{ \"Build Name\" | clean_resource_name }}"), "build-name");
    assert_eq!(plain("{{ pwd }}"), std::env::current_dir().unwrap().to_string_lossy());
    let ts = plain("{{ timestamp }}");
    assert_eq!(ts, init_time().timestamp().to_string());
    assert_eq!(plain("{{ timestamp }}"), ts, "one timestamp per process");
    assert_eq!(plain("{{ isotime }}"), format_go(&init_time(), "2006-01-02T15:04:05Z07:00"));
    assert_eq!(plain("{{ isotime \"20060102\" }}"), init_time().format("%Y%m%d").to_string());
    assert_eq!(plain("{{ isotime \"Jan _2 15:04:05\" }}"), init_time().format("%b %e %H:%M:%S").to_string());
    assert_eq!(plain("{{ strftime \"%Y-%m-%d %H\" }}"), init_time().format("%Y-%m-%d %H").to_string());
    assert!(err("{{ isotime \"a\" \"b\" }}").contains("too many values, 1 needed"));
    let u1 = plain("{{ uuid }}");
    assert_eq!(u1.len(), 36);
    assert_ne!(u1, plain("{{ uuid }}"));
    // Used only inside a string: user variable values are not rendered again (one pass, like Go).
    assert_eq!(plain("{{ user `braces` }}"), "{{ .HTTPIP }}");
}

#[test]
fn user_variables_env_and_unavailable_functions() {
    // An undefined user variable is "" in component options, as Packer renders it; it is reported.
    let out = render("[{{ user `nope` }}]", &ctx(), &Data::strings(data())).unwrap();
    assert_eq!(out.text, "[]");
    assert_eq!(out.unset_user_variables, vec!["nope"]);
    // In the variables section (env allowed) it is Packer's error.
    let vars_ctx = Context { enable_env: true, ..ctx() };
    let e = render("{{ user `nope` }}", &vars_ctx, &Data::Deferred).unwrap_err();
    assert_eq!(e.to_string(), "{{ user `nope` }}: Error: variable not set: nope");
    // HCL2 sends no user variables at all.
    let hcl = Context { user_variables: None, ..ctx() };
    let e = render("{{ user `x` }}", &hcl, &Data::Deferred).unwrap_err().to_string();
    assert!(e.contains("in HCL2 templates use var.x"), "{e}");
    // env: only where enabled.
    let e = err("{{ env `HOME` }}");
    assert!(e.starts_with("{{ env `HOME` }}: env vars are not allowed here"), "{e}");
    std::env::set_var("QEMU_RS_TEMPLATE_TEST_VAR", "v1");
    assert_eq!(render("{{ env `QEMU_RS_TEMPLATE_TEST_VAR` }}", &vars_ctx, &Data::Deferred).unwrap().text, "v1");
    for f in ["consul_key `a`", "vault `a` `b`", "aws_secretsmanager `a`", "aws_secretsmanager_raw `a`"] {
        let e = err(&format!("{{{{ {f} }}}}"));
        let name = f.split(' ').next().unwrap();
        assert!(e.contains(&format!("the function {name:?} is not available in qemu-rs")), "{e}");
    }
    assert!(err("{{ sed `s/a/b/` `x` }}").contains("use replace or replace_all"));
    let e = render("{{ build_name }}", &Context::default(), &Data::Deferred).unwrap_err().to_string();
    assert!(e.contains("build_name not available"), "{e}");
    let e = render("{{ template_dir }}", &Context::default(), &Data::Deferred).unwrap_err().to_string();
    assert!(e.contains("template path not available"), "{e}");
}

#[test]
fn unknown_variables_and_unavailable_data() {
    let e = err("{{ .HTTPAddr }}");
    assert_eq!(e, "unknown template variable \".HTTPAddr\"; available here: .HTTPIP, .HTTPPort, .Name, .SSHPublicKey");
    let t = Template::parse("{{ .HTTPIP }} {{ .Path }} {{ build `Host` }} {{ user `u` }}").unwrap();
    assert!(t.check_variables(&["HTTPIP", "Path", "Host"]).is_ok());
    let e = t.check_variables(&["HTTPIP", "Host"]).unwrap_err();
    assert_eq!(e.to_string(), "unknown template variable \".Path\"; available here: .HTTPIP, .Host");
    assert!(t.references().contains(&Reference::User("u".into())));
    let no_data = Data::Unavailable("template data is only available in boot_command".into());
    let e = r("a {{ .Name }}", &no_data).unwrap_err();
    assert_eq!(e.to_string(), "{{ .Name }}: template data is only available in boot_command");
    assert_eq!(r("{{ build_name }}", &no_data).unwrap(), "qemu-a");
}

#[test]
fn deferred_data_keeps_actions_and_computes_the_rest() {
    let d = Data::Deferred;
    assert_eq!(r("{{ user `name` }} {{ .HTTPIP }}:{{ .HTTPPort }}", &d).unwrap(), "deb {{.HTTPIP}}:{{.HTTPPort}}");
    // Computable parts of a deferred action become literals.
    assert_eq!(r("{{ printf \"%s/%s\" (user `name`) .Name }}", &d).unwrap(), "{{printf \"%s/%s\" \"deb\" .Name}}");
    assert_eq!(r("{{ user `name` | printf \"%s-%s\" .Name }}", &d).unwrap(), "{{\"deb\" | printf \"%s-%s\" .Name}}");
    assert_eq!(r("{{ build `Host` }}", &d).unwrap(), "{{build \"Host\"}}");
    // Control structures on deferred data are kept, their computable parts computed.
    assert_eq!(
        r("{{ if eq .Name (user `name`) }}{{ user `disk_size` }}{{ else }}{{ .HTTPIP }}{{ end }}", &d).unwrap(),
        "{{if eq .Name \"deb\"}}20480{{else}}{{.HTTPIP}}{{end}}"
    );
    // Trim markers are applied now and not written back.
    assert_eq!(r("a  {{- .Name -}}  b", &d).unwrap(), "a{{.Name}}b");
    // Literal braces next to kept actions or other braces cannot form delimiters later.
    assert_eq!(r("{{ user `braces` }} {{ .HTTPIP }}", &d).unwrap(), "{{\"{\"}}{ .HTTPIP }} {{.HTTPIP}}");
    assert_eq!(r("{{ \"{\" }}{{ .X }}", &d).unwrap(), "{{\"{\"}}{{.X}}");
    // Without deferred parts, nothing is escaped.
    assert_eq!(r("{ {{ user `braces` }}", &d).unwrap(), "{ {{ .HTTPIP }}");
    // Errors in computable parts are reported now.
    assert!(r("{{ printf \"%s\" (env `X`) .Name }}", &d).unwrap_err().to_string().contains("env vars are not allowed"));
}

#[test]
fn deferred_output_renders_like_go_would_later() {
    // Rendering now (deferred) and then with the data gives what one rendering with both gives.
    let cases = [
        "http://{{ .HTTPIP }}:{{ .HTTPPort }}/{{ user `name` }}.cfg<enter>",
        "{{ if eq (user `name`) \"deb\" }}{{ .Name | upper }}{{ end }}",
        "{{ with .Name }}{{ . }}-{{ user `disk_size` }}{{ end }}",
        "{{ $u := user `name` }}{{ $n := .Name }}{{ $u }}{{ $n }}",
        "{ {{- user `braces` }}{{ .HTTPIP }}{ {{\"{\"}}",
        "{{ printf \"%q\" (user `braces`) }}{{ .HTTPPort }}",
        // Braces of separate output segments, with an empty one between them (the escaping
        // looks past segment ends), and a padded one.
        "{{ \"{\" }}{{ \"\" }}{{ \"{\" }}{{ .Name }}{{ printf \"%3s\" \"{\" }}{{ \"{x\" }}",
        "{{ printf \"%-9s\" \"{\" }}{{ \"{\" }}{{ .HTTPIP }}{",
    ];
    let full = Data::strings(data());
    for t in cases {
        let once = r(t, &full).unwrap();
        let first = r(t, &Data::Deferred).unwrap();
        let second = r(&first, &full).unwrap_or_else(|e| panic!("{t:?} → {first:?}: {e}"));
        assert_eq!(second, once, "{t:?} → {first:?}");
    }
}

#[test]
fn plain_text_and_lone_braces() {
    let t = Template::parse("no actions } here { at all").unwrap();
    assert!(t.variables().is_empty());
    assert!(t.is_plain());
    assert_eq!(t.render(&BTreeMap::new()).unwrap(), "no actions } here { at all");
    assert_eq!(Template::parse("x {{ .Name").unwrap_err(), TemplateError::Unclosed(2));
}

#[test]
fn context_debug_hides_user_variable_values() {
    let shown = format!("{:?}", ctx());
    assert!(shown.contains("disk_size") && !shown.contains("20480"), "{shown}");
}

#[test]
fn render_for_later_never_reinterprets_function_output() {
    let t = Template::parse("{{ user `braces` }} {{ .HTTPIP }}|{{ user `braces` }}").unwrap();
    let later = t.render_for_later(&ctx()).unwrap().text;
    assert_eq!(r(&later, &Data::strings(data())).unwrap(), "{{ .HTTPIP }} 10.0.2.2|{{ .HTTPIP }}");
    let only_functions = Template::parse("{{ user `braces` }}").unwrap().render_for_later(&ctx()).unwrap().text;
    assert_eq!(r(&only_functions, &Data::strings(data())).unwrap(), "{{ .HTTPIP }}");
    let plain_text = Template::parse("no braces").unwrap().render_for_later(&ctx()).unwrap().text;
    assert_eq!(plain_text, "no braces");
}

/// Found by the `template` fuzz target: a parenthesized later stage computed now stays a command.
#[test]
fn render_for_later_keeps_a_computed_paren_stage_a_command() {
    let t = Template::parse(r#"{{ .HTTPIP | lower | (split "a,b" "," 0) }}"#).unwrap();
    let later = t.render_for_later(&ctx()).unwrap().text;
    assert_eq!(later, r#"{{.HTTPIP | lower | ("a")}}"#);
    assert!(Template::parse(&later).is_ok(), "{later}");
}

/// Found by the `template` fuzz target: a later stage whose first argument is a parenthesized
/// pipeline computed now, followed by more arguments, stays a command too.
#[test]
fn render_for_later_keeps_a_computed_first_argument_of_a_later_stage_a_command() {
    let t = Template::parse(r#"{{ .HTTPIP | lower | (split "a,b" "," 0) (split "c,d" "," 1) }}"#).unwrap();
    let later = t.render_for_later(&ctx()).unwrap().text;
    assert_eq!(later, r#"{{.HTTPIP | lower | ("a") "d"}}"#);
    assert!(Template::parse(&later).is_ok(), "{later}");
    // the input the fuzzer found
    let input = "eOhwrangce}}}t0/{{ .IP|lower| (split \"\0\u{4}TPhtml{index\" \"]Xtml\" 0)  (split \"\0\u{4}TPhtml{index\" \"]Xtml\" 0) }}/(a\u{3}nui\u{19}\0}}1e9@`}}}/(a\u{3}nui\u{19}\0}}1e9@`}}iso";
    let later = Template::parse(input).unwrap().render_for_later(&ctx()).unwrap().text;
    assert!(Template::parse(&later).is_ok(), "{later}");
}
