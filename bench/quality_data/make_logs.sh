#!/usr/bin/env bash
# Recreate the three logs under bench/quality_data/logs/ by running real tools on small projects
# built in a temporary directory. The committed logs are what the benchmark reads (pointer
# addresses and temporary names differ from run to run); this script says how they were made.
#
#   bash bench/quality_data/make_logs.sh [python]    # default: .venv/bin/python
#
# pip-install-fastframe.log   pip builds a C extension whose header (lz4frame.h) is not installed
# pytest-ledger.log           pytest -v -l on a small ledger project with two failing tests
# compileall-markdown_it.log  compileall on a copy of markdown_it with a colon removed (line 42)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-$here/../../.venv/bin/python}"
python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"  # absolute, the venv kept
out="$here/logs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# --- pip: a C extension that needs a header this machine lacks ----------------------------------
mkdir -p "$work/fastframe/src"
cat > "$work/fastframe/pyproject.toml" <<'EOF'
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "fastframe"
version = "0.3.1"
description = "Fast LZ4 frame compression for Python"
EOF
cat > "$work/fastframe/setup.py" <<'EOF'
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastframe._frame",
            sources=["src/frame.c"],
            libraries=["lz4"],
        )
    ],
    packages=["fastframe"],
    package_dir={"fastframe": "src"},
)
EOF
cat > "$work/fastframe/src/__init__.py" <<'EOF'
from fastframe._frame import compress, decompress
EOF
cat > "$work/fastframe/src/frame.c" <<'EOF'
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <lz4frame.h>

static PyObject *compress(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    size_t bound = LZ4F_compressFrameBound(data.len, NULL);
    PyObject *out = PyBytes_FromStringAndSize(NULL, bound);
    size_t n = LZ4F_compressFrame(PyBytes_AS_STRING(out), bound, data.buf, data.len, NULL);
    PyBuffer_Release(&data);
    _PyBytes_Resize(&out, n);
    return out;
}

static PyMethodDef methods[] = {
    {"compress", compress, METH_VARARGS, "Compress bytes into an LZ4 frame."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_frame", NULL, -1, methods};

PyMODINIT_FUNC PyInit__frame(void) { return PyModule_Create(&module); }
EOF
# --target: nothing lands in the environment even if the build were to succeed
(cd "$work" && "$python" -m pip install -v --no-index --no-build-isolation \
    --target "$work/target" ./fastframe > "$out/pip-install-fastframe.log" 2>&1)

# --- pytest: a small ledger project, two tests fail ---------------------------------------------
mkdir -p "$work/ledger/ledger" "$work/ledger/tests"
cat > "$work/ledger/ledger/__init__.py" <<'EOF'
"""A tiny double-entry ledger: accounts, postings and monthly statements."""
EOF
cat > "$work/ledger/ledger/money.py" <<'EOF'
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def to_money(value) -> Decimal:
    """Parse a user-entered amount such as '12.5' or '1,204.10'."""
    return Decimal(str(value).replace(",", "")).quantize(CENT, rounding=ROUND_HALF_EVEN)


def split_evenly(total: Decimal, parts: int) -> list[Decimal]:
    """Split ``total`` into ``parts`` amounts that add up to it exactly."""
    share = (total / parts).quantize(CENT)
    shares = [share] * parts
    shares[-1] += total - share * parts
    return shares


def average_balance(balances: list[Decimal]) -> Decimal:
    return (sum(balances) / len(balances)).quantize(CENT)
EOF
cat > "$work/ledger/ledger/accounts.py" <<'EOF'
from dataclasses import dataclass, field
from decimal import Decimal


class LedgerError(Exception):
    pass


@dataclass
class Account:
    name: str
    currency: str = "EUR"
    postings: list[Decimal] = field(default_factory=list)

    @property
    def balance(self) -> Decimal:
        return sum(self.postings, Decimal("0"))


class Ledger:
    def __init__(self):
        self.accounts: dict[str, Account] = {}

    def open(self, name: str, currency: str = "EUR") -> Account:
        if name in self.accounts:
            raise LedgerError(f"account {name!r} already exists")
        self.accounts[name] = Account(name, currency)
        return self.accounts[name]

    def transfer(self, source: str, target: str, amount: Decimal) -> None:
        src, dst = self.accounts[source], self.accounts[target]
        if src.currency != dst.currency:
            raise LedgerError(f"cannot transfer {src.currency} to {dst.currency}")
        src.postings.append(-amount)
        dst.postings.append(amount)

    def statement(self, name: str) -> str:
        account = self.accounts[name]
        lines = [f"{name} ({account.currency})"]
        lines += [f"  {p:>10}" for p in account.postings]
        lines.append(f"  balance {account.balance}")
        return "\n".join(lines)
EOF
cat > "$work/ledger/tests/test_money.py" <<'EOF'
from decimal import Decimal

import pytest

from ledger.money import average_balance, split_evenly, to_money


def test_to_money_plain():
    assert to_money("12.5") == Decimal("12.50")


def test_to_money_thousands_separator():
    assert to_money("1,204.10") == Decimal("1204.10")


def test_to_money_rounds_half_even():
    assert to_money("0.125") == Decimal("0.12")


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_split_evenly_adds_up(parts):
    assert sum(split_evenly(Decimal("100.00"), parts)) == Decimal("100.00")


def test_split_evenly_shares_differ_by_at_most_a_cent():
    shares = split_evenly(Decimal("10.00"), 3)
    assert max(shares) - min(shares) <= Decimal("0.01")


def test_average_balance():
    assert average_balance([Decimal("10"), Decimal("20")]) == Decimal("15.00")


def test_average_balance_of_no_months():
    assert average_balance([]) == Decimal("0.00")
EOF
cat > "$work/ledger/tests/test_accounts.py" <<'EOF'
from decimal import Decimal

import pytest

from ledger.accounts import Ledger, LedgerError


@pytest.fixture
def ledger():
    book = Ledger()
    book.open("cash")
    book.open("savings")
    book.open("usd-card", currency="USD")
    return book


def test_open_twice_is_refused(ledger):
    with pytest.raises(LedgerError):
        ledger.open("cash")


def test_transfer_moves_money(ledger):
    ledger.transfer("cash", "savings", Decimal("25.00"))
    assert ledger.accounts["savings"].balance == Decimal("25.00")
    assert ledger.accounts["cash"].balance == Decimal("-25.00")


def test_transfer_between_currencies_is_refused(ledger):
    with pytest.raises(LedgerError):
        ledger.transfer("cash", "usd-card", Decimal("5.00"))


def test_transfer_to_unknown_account(ledger):
    with pytest.raises(LedgerError):
        ledger.transfer("cash", "brokerage", Decimal("5.00"))


def test_statement_lists_balance(ledger):
    ledger.transfer("cash", "savings", Decimal("12.00"))
    assert ledger.statement("savings").endswith("balance 12.00")
EOF
(cd "$work/ledger" && "$python" -m pytest -v -l -p no:cacheprovider -p no:hypothesispytest tests \
    > "$out/pytest-ledger.log" 2>&1)

# --- compileall: markdown_it (as installed) with one colon removed ------------------------------
site="$("$python" -c 'import markdown_it, os; print(os.path.dirname(markdown_it.__file__))')"
mkdir -p "$work/src"
cp -r "$site" "$work/src/markdown_it"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
sed -i '42s/while i >= 0:/while i >= 0/' "$work/src/markdown_it/rules_inline/emphasis.py"
(cd "$work/src" && "$python" -m compileall -f markdown_it > "$out/compileall-markdown_it.log" 2>&1)
ls -l "$out"
