"""Two readability promises of the library (issue 12), checked on its source with `ast` (nothing is imported).

1. No function or method is longer than 60 lines, counted from its `def` line to its last line. A longer one
   reads better as named steps.
2. Every public name a student can reach has a docstring that says what it is for. Public: the name does not
   start with "_". Checked: module-level classes and functions, and the methods of public classes, properties
   included. Not checked, because their meaning is fixed by Python or stated elsewhere:
   - dunder methods (`__init__`'s arguments belong in the class docstring), except `__call__`, which is how a
     pipeline, sampler, guider or scaling is used;
   - property setters (the getter carries the docstring);
   - a method that overrides a documented method of a minigen base class: it inherits that docstring, as
     `help()` shows it (a base from torch or ipywidgets does not count: `nn.Module.forward` says nothing
     about ours);
   - the one method of a class that has a docstring and no other public method, such as the `forward` of a
     small module or the `__call__` of a scaling: the class is that function, and its docstring says what the
     call does.
The tests list every offender as `path:line name`.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def library_modules():
    """{dotted module name: parsed tree} for every library file (the tests are not library code). Each tree
    keeps its file's path as `tree.path`, for the failure messages."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if "tests" in relative.parts:
            continue
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        modules[name] = ast.parse(path.read_text(), filename=str(relative))
        modules[name].path = relative.as_posix()
    return modules


def where(tree, node):
    """`minigen/x.py:12`: where a student finds the node."""
    return f"{tree.path}:{node.lineno}"


def is_function(node):
    """A `def` or an `async def`."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def methods(cls):
    """{name: def} of a class body; a property setter does not replace its getter."""
    found = {}
    for node in cls.body:
        if is_function(node) and not any(
            isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in node.decorator_list
        ):
            found[node.name] = node
    return found


class ClassIndex:
    """Finds the minigen class that a base-class expression names, through the module's own classes and its
    `from ... import` lines; a base from outside minigen resolves to None."""

    def __init__(self, modules):
        self.classes = {
            (module, node.name): node
            for module, tree in modules.items()
            for node in tree.body
            if isinstance(node, ast.ClassDef)
        }
        self.imports = {module: self.imported_names(module, tree) for module, tree in modules.items()}

    @staticmethod
    def imported_names(module, tree):
        """{local name: (source module, name there)} for the module's `from ... import` lines, relative ones
        resolved against the module's own package."""
        package = module.split(".")
        names = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    names[alias.asname or alias.name] = (source, alias.name)
        return names

    def resolve(self, module, base):
        """(module, ClassDef) of the minigen class that `base` names inside `module`, or None."""
        if not isinstance(base, ast.Name):
            return None
        key = (module, base.id)
        if key not in self.classes:
            key = self.imports[module].get(base.id)
        return (key[0], self.classes[key]) if key in self.classes else None

    def documented_upstream(self, module, cls, name):
        """Whether a minigen base class of `cls` (at any depth) documents a method called `name`."""
        for base in cls.bases:
            found = self.resolve(module, base)
            if found is None:
                continue
            base_module, base_cls = found
            method = methods(base_cls).get(name)
            if method is not None and ast.get_docstring(method):
                return True
            if self.documented_upstream(base_module, base_cls, name):
                return True
        return False


def undocumented_methods(index, modules, module, cls):
    """The public methods of a public class that break the docstring rule in this file's docstring."""
    public = {name: node for name, node in methods(cls).items() if not name.startswith("_") or name == "__call__"}
    if ast.get_docstring(cls) and len(public) == 1:
        return []
    return [
        f"{where(modules[module], node)} {cls.name}.{name}"
        for name, node in public.items()
        if not ast.get_docstring(node) and not index.documented_upstream(module, cls, name)
    ]


def test_no_function_is_longer_than_60_lines():
    too_long = [
        f"{where(tree, node)} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for tree in library_modules().values()
        for node in ast.walk(tree)
        if is_function(node) and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)


def test_every_public_class_and_function_has_a_docstring():
    modules = library_modules()
    index = ClassIndex(modules)
    missing = []
    for module, tree in modules.items():
        for node in tree.body:
            if not (is_function(node) or isinstance(node, ast.ClassDef)) or node.name.startswith("_"):
                continue
            if not ast.get_docstring(node):
                missing.append(f"{where(tree, node)} {node.name}")
            if isinstance(node, ast.ClassDef):
                missing += undocumented_methods(index, modules, module, node)
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
