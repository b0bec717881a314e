"""`tf_agents_wheel`: the pinned upstream distribution plus owned modules.

The rule collects `PyInfo.transitive_sources` of its `deps` (the py_library
targets of the modules this repository owns), keeps this repository's files
under `tf_agents/` except `__init__.py` (the overlay shims never ship;
upstream's `__init__` files do), and runs `wheel_writer.py` under the selected
Python environment's interpreter, which reads the upstream distribution
installed there. See decision 4 of the architecture doc.

The writer's arguments are also written to `<name>.args` (a params file with
execroot-relative paths, which are runfiles-relative for source files) and put
in the rule's runfiles, so a test can rerun the writer on exactly the same
inputs.
"""

_PACKAGE_ROOT = "tf_agents/"

def _owned_sources(deps):
    """Returns this repository's non-`__init__` files under tf_agents/."""
    owned = []
    for dep in deps:
        for f in dep[PyInfo].transitive_sources.to_list():
            if f.owner.workspace_name or f.short_path.startswith("../"):
                continue  # Another repository's file.
            if not f.short_path.startswith(_PACKAGE_ROOT):
                fail(("{} (from {}) is outside {}: an owned module's " +
                      "dependencies must ship in the wheel.").format(
                    f.short_path,
                    dep.label,
                    _PACKAGE_ROOT,
                ))
            if f.basename == "__init__.py":
                continue  # An overlay shim; upstream's ships instead.
            owned.append(f)
    unique = {f.short_path: f for f in owned}
    return [unique[path] for path in sorted(unique)]

def _wheel_name(distribution, version, local_label):
    full = version + ("+" + local_label if local_label else "")
    return "{}-{}-py3-none-any.whl".format(
        distribution.replace("-", "_").replace(".", "_").lower(),
        full.replace("-", "_"),
    )

def _tf_agents_wheel_impl(ctx):
    sources = _owned_sources(ctx.attr.deps)
    wheel = ctx.actions.declare_file(_wheel_name(
        ctx.attr.distribution,
        ctx.attr.upstream_version,
        ctx.attr.local_label,
    ))
    params = ctx.actions.declare_file(ctx.label.name + ".args")

    args = [
        "--distribution=" + ctx.attr.distribution,
        "--upstream_version=" + ctx.attr.upstream_version,
        "--local_label=" + ctx.attr.local_label,
    ]
    args += ["--overlay={}={}".format(f.short_path, f.path) for f in sources]
    inputs = list(sources)
    if ctx.file.license:
        args.append("--license=" + ctx.file.license.path)
        inputs.append(ctx.file.license)
    args += [
        "--requirement_override={}={}".format(k, v)
        for k, v in sorted(ctx.attr.requirement_overrides.items())
    ]
    args += ["--extra_requirement=" + r for r in ctx.attr.extra_requirements]
    args += [
        "--console_script={}={}".format(k, v)
        for k, v in sorted(ctx.attr.console_scripts.items())
    ]
    ctx.actions.write(params, "\n".join(args) + "\n")

    ctx.actions.run(
        executable = ctx.attr._writer[DefaultInfo].files_to_run,
        arguments = ["@" + params.path, "--output=" + wheel.path],
        inputs = inputs + [params],
        outputs = [wheel],
        mnemonic = "TfAgentsWheel",
        progress_message = "Writing wheel {}".format(wheel.short_path),
    )
    return [DefaultInfo(
        files = depset([wheel]),
        runfiles = ctx.runfiles(files = [wheel, params] + inputs),
    )]

tf_agents_wheel = rule(
    implementation = _tf_agents_wheel_impl,
    doc = "A wheel of the upstream distribution with owned modules over it.",
    attrs = {
        "console_scripts": attr.string_dict(
            doc = "name -> package.module:function; a script ships only " +
                  "when its module is in the wheel.",
        ),
        "deps": attr.label_list(
            providers = [PyInfo],
            doc = "py_library targets of the owned modules.",
        ),
        "distribution": attr.string(mandatory = True),
        "extra_requirements": attr.string_list(
            doc = "Requires-Dist entries added to upstream's.",
        ),
        "license": attr.label(allow_single_file = True),
        "local_label": attr.string(
            doc = "PEP 440 local version label; empty for upstream's version.",
        ),
        "requirement_overrides": attr.string_dict(
            doc = "project -> requirement replacing upstream's on project.",
        ),
        "upstream_version": attr.string(mandatory = True),
        "_writer": attr.label(
            default = "//tools/pip_package:wheel_writer_bin",
            executable = True,
            cfg = "exec",
        ),
    },
)
