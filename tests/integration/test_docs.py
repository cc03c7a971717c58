"""The documentation matches the code: every config key is in deploy.ini(5) and
deploy.ini.example, every command and option in deployctl(1), deploy-agent(8) and
docs/protocol.md, every protocol error code and journal MESSAGE_ID documented; and
`make install` installs the three man pages, which render without a warning; every
citation of docs/design.md in the sources names a heading that exists, nothing cites a
document outside the repository, and its "Source layout" names every folder.

The lists are taken from the programs themselves (check-config -v, --help) and from
the sources (the control command table, log.h), never written down here.
"""

import os
import re
import shutil
import subprocess

import pytest

import harness
from control_harness import DEPLOYCTL_BIN

REPO = harness.REPO
DOCS = REPO / "docs"
MANPAGES = {"deploy-agent.8": 8, "deployctl.1": 1, "deploy.ini.5": 5}


def read(path):
    return (REPO / path).read_text()


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture(scope="module")
def config_keys(tmp_path_factory):
    """{section: [keys]} from `deploy-agent check-config -v` of a minimal file."""
    d = tmp_path_factory.mktemp("docs")
    cfg = d / "deploy.ini"
    cfg.write_text(f"[agent]\nstate_dir = {d}/state\nworker_user = nobody\n[s3]\n"
                   f'[service "app"]\nbucket = artifacts\nroot = {d}/srv\n')
    r = run(harness.AGENT_BIN, "-c", cfg, "check-config", "-v")
    assert r.returncode == 0, r.stderr
    keys, section = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^\[(agent|s3|service) ?.*\]$", line)
        if m:
            section = m.group(1)
            keys[section] = []
        elif section and "=" in line and not line.startswith("#"):
            keys[section].append(line.split("=", 1)[0].strip())
    assert set(keys) == {"agent", "s3", "service"} and sum(map(len, keys.values())) > 30, keys
    return keys


def help_commands(text):
    """Command names listed under "Commands:" in a --help text."""
    block = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.startswith("  ") and line.split()]


def help_options(text):
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b", text)))


def man_mentions(man, word):
    """word appears in the man page as itself (escaped dashes as in troff)."""
    escaped = re.escape(word.replace("-", "\\-"))
    return re.search(rf"(?<![\w\\-]){escaped}(?![\w-])", man) is not None


def test_every_config_key_is_documented(config_keys):
    man = read("docs/deploy.ini.5")
    example = read("deploy.ini.example")
    for section, keys in config_keys.items():
        header = {"agent": "[agent]", "s3": "[s3]", "service": "[service"}[section]
        assert header in man and header in example, header
        for key in keys:
            assert re.search(rf"(?<![\w]){re.escape(key)}=", man), f"deploy.ini(5) lacks {key}"
            assert re.search(rf"^;?\s*{re.escape(key)}\s*=", example, re.M), f"deploy.ini.example lacks {key}"


def control_commands_in_source():
    """The command table of agent/supervisor/control-commands.c: name -> needs an admin."""
    src = read("agent/supervisor/control-commands.c")
    table = src.split("static const Command commands[] = {", 1)[1].split("};", 1)[0]
    return {m.group(1): m.group(2) == "true"
            for m in re.finditer(r'\{\s*"([a-z]+)",\s*(true|false),', table)}


def test_every_deployctl_command_and_option_is_documented():
    r = run(DEPLOYCTL_BIN, "--help")
    assert r.returncode == 0
    commands = help_commands(r.stdout)
    socket_commands = control_commands_in_source()
    assert set(socket_commands) == set(commands) - {"publish", "fleet"}, (commands, socket_commands)
    man = read("docs/deployctl.1")
    proto = read("docs/protocol.md")
    for cmd in commands:
        assert re.search(rf"^\.(B|BR|BI) \"?{cmd}\b", man, re.M), f"deployctl(1) lacks a {cmd} entry"
    for cmd in socket_commands:
        assert re.search(rf"^### (.*, )?{cmd}\b", proto, re.M), f"protocol.md lacks a section on {cmd}"
        assert f'{{"cmd":"{cmd}"' in proto, f"protocol.md has no example of {cmd}"
    # who may do what: the table of protocol.md says what the code enforces
    row = next(line for line in proto.splitlines() if "| `deploy`" in line)
    for cmd, changes in socket_commands.items():
        assert (f"`{cmd}`" in row) == changes, cmd
    # options, global and per command
    options = help_options(r.stdout)
    for cmd in commands:
        c = run(DEPLOYCTL_BIN, cmd, "--help")
        assert c.returncode == 0, cmd
        options += help_options(c.stdout)
    for opt in sorted(set(options)):
        assert man_mentions(man, opt), f"deployctl(1) lacks {opt}"
    # exit statuses
    codes = re.search(r"Exit status: (.*)", r.stdout, re.S).group(1)
    for n in re.findall(r"(\d) [a-z]", codes):
        assert re.search(rf"^\.TP\n\.B {n}\n", man, re.M), f"deployctl(1) lacks exit status {n}"


def error_codes_in_source():
    codes = set()
    for path in ("agent/supervisor/control.c", "agent/supervisor/control-commands.c"):
        src = read(path)
        for m in re.finditer(r"control_reply_error\(\s*[\w>\-]+,\s*(.*?),\s*(?:name|to|k|\")", src, re.S):
            codes.update(re.findall(r'"([a-z_]+)"', m.group(1)))
        codes.update(re.findall(r'"code",\s*"([a-z_]+)"', src))
        codes.update(re.findall(r'\\"code\\":\\"([a-z_]+)\\"', src))
    return codes


def test_every_error_code_and_event_is_documented():
    codes = error_codes_in_source()
    assert {"bad_request", "too_large", "unknown_command", "unknown_service", "not_deployed",
            "permission_denied", "busy", "failed", "not_found", "bad_config", "internal"} <= codes, codes
    proto = read("docs/protocol.md")
    table = proto.split("## Error codes", 1)[1]
    for code in codes:
        assert f"| `{code}` |" in table, f"protocol.md's error table lacks {code}"
    # deployctl's own codes for --json
    for code in re.findall(r'transport_error\(ctl, \w+, "([a-z_]+)"', read("agent/ctl/deployctl.c")):
        assert f"`{code}`" in table, code
    for event in ("step", "progress"):
        assert f"| `{event}` |" in proto
    for limit in ("65536", "256", "30 s", "1 MiB"):
        assert limit in proto.split("## Limits", 1)[1], limit


def test_deploy_agent_commands_options_signals_and_journal_fields_are_documented():
    r = run(harness.AGENT_BIN, "--help")
    assert r.returncode == 0
    man = read("docs/deploy-agent.8")
    commands = help_commands(r.stdout)
    assert {"run", "once", "check-config"} <= set(commands)
    for cmd in commands:
        assert re.search(rf"^\.TP\n\.BR? \"?{re.escape(cmd)}\b", man, re.M), f"deploy-agent(8) lacks {cmd}"
    for opt in help_options(r.stdout):
        assert man_mentions(man, opt), f"deploy-agent(8) lacks {opt}"
    for sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"):
        assert sig in man
    log_h = read("agent/common/log.h")
    for name, mid in re.findall(r"#define (LOG_MID_\w+)\s+\"([0-9a-f]{32})\"", log_h):
        assert mid in man, f"deploy-agent(8) lacks {name} {mid}"
    for field in ("DEPLOY_SERVICE=", "DEPLOY_SHA=", "DEPLOY_STEP=", "MESSAGE_ID="):
        assert field in man, field
    for code in re.findall(r"EXIT_\w+ = (\d)", read("agent/supervisor/main.c")):
        assert re.search(rf"^\.TP\n\.B {code}\n", man, re.M), f"deploy-agent(8) lacks exit status {code}"


def test_make_install_installs_man_pages_that_render_cleanly(tmp_path):
    dest = tmp_path / "root"
    # -o all: install what `make` built (the suite needs it built); rebuilding here would
    # race with other builds of the tree and is not what this test is about.
    r = run("make", "-C", REPO, "-o", "all", "install", f"DESTDIR={dest}", "PREFIX=/usr")
    assert r.returncode == 0, r.stdout + r.stderr
    for page, section in MANPAGES.items():
        installed = dest / "usr" / "share" / "man" / f"man{section}" / page
        assert installed.read_text() == (DOCS / page).read_text(), page
        # groff comes with awscli (groff-base); man-db may be missing on a minimal host
        g = run("groff", "-man", "-Tutf8", "-ww", "-z", installed)
        assert g.returncode == 0 and g.stderr == "", f"{page}: {g.stderr}"
        if shutil.which("man"):
            m = run("man", "--warnings", "-l", installed, env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
            assert m.returncode == 0 and m.stderr == "", f"{page}: {m.stderr}"
            text = m.stdout
        else:
            text = run("groff", "-man", "-Tutf8", "-P-c", "-P-b", "-P-u", installed).stdout
        assert "SEE ALSO" in text and "NAME" in text
        title = page.rsplit(".", 1)[0].upper()
        assert text.startswith(f"{title}({section})"), text[:80]
    assert (dest / "etc" / "deploy-agent" / "deploy.ini.example").exists()
    assert (dest / "usr" / "sbin" / "deploy-agent").exists() and (dest / "usr" / "bin" / "deployctl").exists()


DESIGN_SECTIONS = ("Processes and privileges", "Steps", "State and crash recovery", "Worker protocol",
                   "Control protocol", "Security model", "Failure handling", "Source layout")
CITING_DIRS = ("agent", "config", "tests")
# Documents that are not in the repository; spelled in pieces so that this
# file does not name them itself.
OUTSIDE_DOCUMENTS = ("DESIGN" ".md", "FIELD" "-NOTES", "../" "shared", "shared" "/", "docs/workers" ".md")
# `docs/design.md, "Steps"`, `docs/design.md "Steps" and "Security model"`: the
# quoted names that follow a citation, on one line or continued on the next.
CITATION = re.compile(r'docs/design\.md[,:]?\s*((?:"[^"\n]+"(?:\s*(?:,|and)\s*)?)*)')


def design_headings():
    return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", read("docs/design.md"), re.M)}


def source_files():
    for top in CITING_DIRS:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in (".c", ".h", ".py", ".sh", ".md", ".txt"):
                yield path


def joined_comment_lines(text):
    """The text with comment continuations (" * ", "# ") folded into one line,
    so a citation wrapped across lines is read whole."""
    return re.sub(r"\n\s*(?:\*(?!/)|#)?\s*", " ", text)


def test_design_citations_name_sections_that_exist():
    headings = design_headings()
    assert set(DESIGN_SECTIONS) <= headings, set(DESIGN_SECTIONS) - headings
    problems, cited = [], 0
    for path in source_files():
        rel = path.relative_to(REPO)
        text = path.read_text(errors="replace")
        for bad in OUTSIDE_DOCUMENTS:
            if bad in text:
                problems.append(f"{rel}: cites {bad}, which is not in the repository")
        if path.name == "test_docs.py":
            continue  # this file describes the citation pattern
        for m in CITATION.finditer(joined_comment_lines(text)):
            names = re.findall(r'"([^"]+)"', m.group(1))
            if not names:
                problems.append(f"{rel}: cites docs/design.md without a section heading")
            for name in names:
                cited += 1
                if name not in headings:
                    problems.append(f'{rel}: cites docs/design.md "{name}", which is no heading there')
    assert not problems, "\n".join(problems)
    assert cited >= 10, f"only {cited} citations found: is the pattern still right?"


def tracked_folders():
    """Top-level folders and those of agent/, config/, tests/, as git tracks them."""
    r = run("git", "-C", REPO, "ls-files")
    assert r.returncode == 0, r.stderr
    folders = set()
    for f in r.stdout.splitlines():
        parts = f.split("/")
        if len(parts) > 1:
            folders.add(parts[0])
        if len(parts) > 2 and parts[0] in ("agent", "config", "tests"):
            folders.add("/".join(parts[:2]))
    return sorted(folders)


def test_design_names_every_folder():
    layout = read("docs/design.md").split("## Source layout", 1)[1].split("\n## ", 1)[0]
    missing = [f for f in tracked_folders() if f.split("/")[-1] + "/" not in layout]
    assert not missing, f'docs/design.md, "Source layout", does not name: {missing}'
