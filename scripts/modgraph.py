#!/usr/bin/env python3
"""modgraph.py - the module dependency graph, from #include lines.

A module is a public header include/<tier>/<name>.h with its sources
src/<tier>/<name>.c and src/<tier>/<name>_<part>.c (and a private
<name>_int.h). Prints each module's dependencies and exits 1 when the
graph has a cycle or a tier includes a higher tier's header:

    util < global < splitmxd, splitmxctl
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
RANK = {'util': 0, 'global': 1, 'splitmxd': 2, 'splitmxctl': 2}

headers = {}			# module -> tier
for tier in RANK:
    d = os.path.join(ROOT, 'include', tier)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.endswith('.h'):
                headers[f[:-2]] = tier


def module_of(stem):
    """queue_load -> queue, spool_codec -> spool_codec (its own header)."""
    parts = stem.split('_')
    for n in range(len(parts), 0, -1):
        cand = '_'.join(parts[:n])
        if cand in headers:
            return cand
    return stem			# a main (splitmxd.c, splitmxctl.c)


deps = {}
bad = []
for tier in RANK:
    for base in ('src', 'include'):
        d = os.path.join(ROOT, base, tier)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith(('.c', '.h')):
                continue
            stem = f[:-2]
            if stem.endswith('_int'):
                stem = stem[:-4]
            mod = module_of(stem)
            deps.setdefault(mod, set())
            text = open(os.path.join(d, f), encoding='utf-8').read()
            for inc in re.findall(r'^#include "([a-z0-9_]+)\.h"', text, re.M):
                if inc.endswith('_int') or inc not in headers:
                    continue
                if RANK[headers[inc]] > RANK[tier] or \
                        (RANK[headers[inc]] == RANK[tier] and
                         headers[inc] != tier):
                    bad.append('%s/%s includes %s (tier %s)' %
                               (tier, f, inc, headers[inc]))
                if inc != mod:
                    deps[mod].add(inc)

# Cycles: strongly connected components of more than one module (Tarjan).
index, low, stack, on, sccs = {}, {}, [], set(), []


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in deps.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(deps):
    if v not in index:
        visit(v)

if '-v' in sys.argv:
    for m in sorted(deps):
        print('%-14s -> %s' % (m, ' '.join(sorted(deps[m])) or '-'))
for b in bad:
    print('tier violation: ' + b)
for c in sccs:
    print('cycle: ' + ' <-> '.join(c))
print('modules: %d, dependency cycles: %d, tier violations: %d' %
      (len(deps), len(sccs), len(bad)))
sys.exit(1 if sccs or bad else 0)
