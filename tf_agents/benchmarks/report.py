# coding=utf-8
"""Results of the PolicySaver benchmark: figures, targets, table, JSON, chart.

`policy_figures` turns a run's samples into figures, `evaluate_targets`
evaluates `figures.TARGETS` on them, and `write_outputs` writes the markdown
tables (`markdown_report`), the JSON file and the chart (`write_chart`).

The results dict (also the JSON file) holds `config`, `environment`,
`policies` (per policy: `description`, `num_parameters` and `figures`, each
with `label`, `unit`, `ours` and `upstream` summaries (median, min, max,
count; None when not measured), `ratio` (ours/upstream of the medians) and
optionally `note`, `method`, `checks` (`checked`, `failed`) and
`file_operations`), `memory_policy`, `largest_mlp`, `wall_time_seconds` and
`targets` (name, policy, metric, kind (`'ratio'` or `'count'`), versus (the
`TargetSpec.versus`), description (what the value compares with), value,
threshold, met: True, False or None when the figure is not measured by
design; `reason` when not met or not applicable).
"""

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.benchmarks import figures
from tf_agents.benchmarks import measurement

JSON_FILENAME = 'policy_saver_benchmark.json'
MARKDOWN_FILENAME = 'policy_saver_benchmark.md'
CHART_FILENAME = 'policy_saver_benchmark.png'

OURS = cases.OURS
UPSTREAM = cases.UPSTREAM

_MET = {True: 'met', False: '**not met**', None: 'n/a'}


def ratio(numerator: Optional[float],
          denominator: Optional[float]) -> Optional[float]:
  """`numerator / denominator`, or None if either is missing or zero."""
  if numerator is None or not denominator:
    return None
  return numerator / denominator


def policy_figures(name: str, samples: measurement.Samples,
                   memory_policy: Optional[str]) -> Dict[str, Any]:
  """The figures of one policy from a run's samples.

  Args:
    name: The policy case's name.
    samples: The run's samples.
    memory_policy: The policy whose peak memory was measured, if any.

  Returns:
    `{metric key: figure}` in `figures.METRICS` order.
  """
  result = {}
  for metric in figures.METRICS:
    if metric.memory_only and name != memory_policy:
      continue
    ours = measurement.summarize(samples.get(name, metric.key, OURS))
    upstream = measurement.summarize(samples.get(name, metric.key, UPSTREAM))
    figure = {
        'label': metric.label,
        'unit': metric.unit,
        OURS: ours,
        UPSTREAM: upstream,
        'ratio': ratio(ours and ours['median'],
                       upstream and upstream['median']),
    }
    key = (name, metric.key)
    optional = {
        'note': samples.notes.get(key),
        'method': samples.methods.get(key),
        'file_operations': samples.file_operations.get(key),
    }
    if key in samples.checks:
      checked, failed = samples.checks[key]
      optional['checks'] = {'checked': checked, 'failed': failed}
    figure.update({k: v for k, v in optional.items() if v is not None})
    result[metric.key] = figure
  return result


# -----------------------------------------------------------------------------
# Targets.


def _policies_of(spec: figures.TargetSpec,
                 results: Dict[str, Any]) -> List[str]:
  """The policies `spec` applies to in `results`."""
  having = [name for name, policy in results['policies'].items()
            if spec.metric in policy['figures']]
  if spec.policy == '*':
    return [name for name in having if not _has_specific(spec, name, results)]
  wanted = {
      'small_mlp': cases.SMALL_MLP_CASE,
      'largest_mlp': results.get('largest_mlp'),
  }.get(spec.policy, spec.policy)
  return [wanted] if wanted in having else []


def _has_specific(spec: figures.TargetSpec, name: str,
                  results: Dict[str, Any]) -> bool:
  """Whether a non-`'*'` target compares `name`'s figure with upstream."""
  if not spec.compares_with_upstream:
    return False
  return any(
      other.policy != '*' and other.metric == spec.metric
      and other.compares_with_upstream and name in _policies_of(other, results)
      for other in figures.TARGETS)


def _median(results: Dict[str, Any], policy: str, metric: str,
            who: str) -> Optional[float]:
  figure = results['policies'][policy]['figures'].get(metric)
  if not figure or not figure.get(who):
    return None
  return figure[who]['median']


def _value(spec: figures.TargetSpec, results: Dict[str, Any],
           policy: str) -> Tuple[Optional[float], str]:
  """The value `spec` bounds for `policy`, and what it compares with."""
  figure = results['policies'][policy]['figures'][spec.metric]
  operations = figure.get('file_operations')
  if spec.versus == UPSTREAM:
    return figure['ratio'], 'upstream ' + spec.metric
  if spec.versus.startswith(figures.OURS_PREFIX):
    other = spec.versus[len(figures.OURS_PREFIX):]
    return ratio(_median(results, policy, spec.metric, OURS),
                 _median(results, policy, other, OURS)), 'our ' + other
  if spec.versus == figures.FASTEST_EXACT:
    # The step at the target's batch size: `..._b64` or batch 1.
    batch = '_b64' if spec.metric.endswith('_b64') else ''
    ours = [m for m in (
        _median(results, policy, 'runtime_step_saved_model' + batch, OURS),
        _median(results, policy, 'runtime_step_tflite' + batch, OURS)) if m]
    return (ratio(min(ours) if ours else None,
                  _median(results, policy, 'runtime_step_saved_model' + batch,
                          UPSTREAM)),
            'upstream SavedModelPyTFEagerPolicy step')
  if spec.versus == figures.FILE_READS:
    return (operations and operations['opens'] + operations['stats'],
            'tf.io.gfile opens + exists/stat/isdir in one poll')
  if spec.versus == figures.FILE_LISTINGS:
    return (operations and operations['listings'],
            'tf.io.gfile listdir/glob/walk in one poll')
  raise ValueError('Unknown versus {!r}.'.format(spec.versus))


def _check_failure(metric: str, checks: Dict[str, int]) -> str:
  what = ('it reported a change in {} of {} empty polls'
          if metric == 'empty_poll' else
          'its actions after the update differed from upstream\'s in {} of '
          '{} repetitions (new weights not served)')
  return what.format(checks['failed'], checks['checked'])


def _evaluate(spec: figures.TargetSpec, results: Dict[str, Any],
              policy: str) -> Dict[str, Any]:
  """One target row."""
  figure = results['policies'][policy]['figures'][spec.metric]
  value, versus = _value(spec, results, policy)
  checks = figure.get('checks')
  reason = None
  if value is None:
    met = None if figure.get('note') else False
    reason = figure.get('note') or 'not measured'
  elif checks and checks['failed']:
    met = False
    reason = _check_failure(spec.metric, checks)
  else:
    met = value <= spec.threshold
  target = {
      'name': spec.name,
      'policy': policy,
      'metric': spec.metric,
      'kind': spec.kind,
      'versus': spec.versus,
      'description': versus,
      'value': value,
      'threshold': spec.threshold,
      'met': met,
  }
  if reason:
    target['reason'] = reason
  return target


def evaluate_targets(results: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Evaluates `figures.TARGETS` on the figures of `results`.

  Args:
    results: The results dict (see the module docstring), without targets.

  Returns:
    One dict per target and policy, in `figures.TARGETS` order.
  """
  return [_evaluate(spec, results, policy)
          for spec in figures.TARGETS
          for policy in _policies_of(spec, results)]


def figures_without_target(results: Dict[str, Any]) -> List[Tuple[str, str]]:
  """(policy, metric) of every figure no target of `results` is about."""
  covered = {(t['policy'], t['metric']) for t in results['targets']}
  covered.update(_references(results))
  return [(name, key) for name, policy in results['policies'].items()
          for key in policy['figures'] if (name, key) not in covered]


def _references(results: Dict[str, Any]
                ) -> Dict[Tuple[str, str], List[Dict[str, Any]]]:
  """The targets each of our figures is the reference (denominator) of.

  E.g. the NumPy forward pass, which the largest MLP's runtime step is held
  to (`'ours:numpy_step'`).
  """
  references = {}
  for target in results['targets']:
    if target['versus'].startswith(figures.OURS_PREFIX):
      key = target['versus'][len(figures.OURS_PREFIX):]
      references.setdefault((target['policy'], key), []).append(target)
  return references


# -----------------------------------------------------------------------------
# Text.


def _format_value(value: Optional[float], unit: str) -> str:
  if value is None:
    return 'n/a'
  if unit == 's':
    if value < 1e-3:
      return '{:.1f} us'.format(value * 1e6)
    if value < 1.0:
      return '{:.2f} ms'.format(value * 1e3)
    return '{:.3f} s'.format(value)
  if value >= 1 << 20:
    return '{:.2f} MiB'.format(value / (1 << 20))
  return '{:.1f} KiB'.format(value / 1024)


def _format_summary(summary: Optional[Dict[str, float]], unit: str) -> str:
  if summary is None:
    return 'n/a'
  median = _format_value(summary['median'], unit)
  if summary['min'] == summary['max']:
    return median
  return '{} ({} – {})'.format(
      median,
      _format_value(summary['min'], unit),
      _format_value(summary['max'], unit),
  )


def format_ratio(value: Optional[float],
                 threshold: Optional[float] = None) -> str:
  """Formats a ratio; with more digits if rounding would hide a miss."""
  if value is None:
    return 'n/a'
  if value >= 10:
    return '{:.1f}'.format(value)
  for digits in (3, 4, 5, 6):
    text = '{:.{}f}'.format(value, digits)
    if threshold is None or (float(text) <= threshold) == (
        value <= threshold):
      return text
  return text


def _format_target_value(target: Dict[str, Any]) -> str:
  if target['kind'] == 'count' and target['value'] is not None:
    return str(target['value'])
  return format_ratio(target['value'], target['threshold'])


def _target_condition(target: Dict[str, Any]) -> str:
  """`<= threshold` with what is bounded, for the figures table."""
  versus = target['versus']
  if target['kind'] == 'count':
    what = 'file reads' if versus == figures.FILE_READS else 'listings'
    return '{} {} (<= {})'.format(what, _format_target_value(target),
                                  target['threshold'])
  if versus.startswith(figures.OURS_PREFIX):
    return '<= {} of {}'.format(target['threshold'], target['description'])
  if versus == figures.FASTEST_EXACT:
    return '<= {} (fastest exact backend)'.format(target['threshold'])
  return '<= {}'.format(target['threshold'])


def _ours_cell(figure: Dict[str, Any]) -> str:
  """Our summary with the figure's note, checks and file calls."""
  remarks = []
  if figure.get('note'):
    remarks.append(figure['note'])
  checks = figure.get('checks')
  if checks:
    remarks.append('checks passed: {} of {}'.format(
        checks['checked'] - checks['failed'], checks['checked']))
  operations = figure.get('file_operations')
  if operations:
    remarks.append('tf.io.gfile calls per poll: ' + ', '.join(
        '{} {}'.format(kind, count) for kind, count in operations.items()))
  text = _format_summary(figure[OURS], figure['unit'])
  return '{} ({})'.format(text, '; '.join(remarks)) if remarks else text


def _header(results: Dict[str, Any]) -> List[str]:
  env = results['environment']
  lines = [
      '# PolicySaver benchmark: ours vs upstream tf-agents 0.19.0',
      '',
      'TensorFlow {}, Python {}, {} CPUs; {} repetitions{}; medians with '
      '(min – max); ratio = ours/upstream of the medians.'.format(
          env['tensorflow'], env['python'], env['cpu_count'],
          results['config']['repetitions'],
          ' (fast mode)' if results['config']['fast'] else ''),
      '',
      '## Policies',
      '',
      '| policy | description | parameters |',
      '| --- | --- | ---: |',
  ]
  for name, policy in results['policies'].items():
    lines.append('| {} | {} | {:,} |'.format(
        name, policy['description'], policy['num_parameters']))
  return lines


def _figure_rows(results: Dict[str, Any]) -> List[str]:
  lines = [
      '', '## Figures', '',
      '| policy | figure | ours | upstream | ratio | target |',
      '| --- | --- | ---: | ---: | ---: | --- |',
  ]
  by_figure = {}
  for target in results['targets']:
    by_figure.setdefault((target['policy'], target['metric']),
                         []).append(target)
  references = _references(results)
  for name, policy in results['policies'].items():
    for key, figure in policy['figures'].items():
      upstream = (_format_summary(figure[UPSTREAM], figure['unit'])
                  if figures.METRICS_BY_KEY[key].upstream
                  else 'no counterpart')
      conditions = ['{}: {}'.format(_target_condition(t), _MET[t['met']])
                    for t in by_figure.get((name, key), [])]
      if not conditions:
        # A reference other figures are held to (e.g. the NumPy floor).
        conditions = ['reference of {} <= {}x: {}'.format(
            t['metric'], t['threshold'], _MET[t['met']])
                      for t in references.get((name, key), [])]
      lines.append('| {} | {} | {} | {} | {} | {} |'.format(
          name, figure['label'], _ours_cell(figure), upstream,
          format_ratio(figure['ratio']), '; '.join(conditions)))
  return lines


def _target_rows(results: Dict[str, Any]) -> List[str]:
  lines = [
      '', '## Targets', '',
      '| target | policy | value | versus | target | met |',
      '| --- | --- | ---: | --- | ---: | --- |',
  ]
  for target in results['targets']:
    status = _MET[target['met']]
    if target.get('reason'):
      status += ' ({})'.format(target['reason'])
    lines.append('| {} | {} | {} | {} | <= {} | {} |'.format(
        target['name'], target['policy'], _format_target_value(target),
        target['description'], target['threshold'], status))
  met = sum(1 for t in results['targets'] if t['met'])
  applicable = sum(1 for t in results['targets'] if t['met'] is not None)
  summary = '{} of {} targets met'.format(met, applicable)
  if applicable < len(results['targets']):
    summary += '; {} not applicable (figure not measured by design)'.format(
        len(results['targets']) - applicable)
  return lines + ['', summary + '.', '']


def markdown_report(results: Dict[str, Any]) -> str:
  """The markdown tables of `results`: policies, figures, targets.

  Args:
    results: The results dict (see the module docstring).

  Returns:
    Markdown text.
  """
  return '\n'.join(
      _header(results) + _figure_rows(results) + _target_rows(results))


# -----------------------------------------------------------------------------
# Files.


def _chart_bars(results: Dict[str, Any]) -> List[Tuple[str, float, Any]]:
  """(label, ratio, (threshold, met) of its upstream target) per bar."""
  targets = {(t['policy'], t['metric']): t for t in results['targets']
             if t['versus'] in (UPSTREAM, figures.FASTEST_EXACT)}
  bars = []
  for name, policy in results['policies'].items():
    for key, figure in policy['figures'].items():
      if figure['ratio'] is not None:
        target = targets.get((name, key))
        bars.append(('{}: {}'.format(name, key), figure['ratio'],
                     target and (target['threshold'], target['met'])))
  return bars


def write_chart(results: Dict[str, Any], path: str) -> None:
  """Writes a PNG bar chart of the ratios ours/upstream (log scale).

  Bars are green when the figure's target is met, red otherwise; a black
  tick marks the target.

  Args:
    results: The results dict (see the module docstring).
    path: The PNG file to write.
  """
  bars = _chart_bars(results)
  figure = Figure(figsize=(9, 1.5 + 0.22 * max(1, len(bars))))
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  positions = np.arange(len(bars))
  axes.barh(positions, [b[1] for b in bars],
            color=['tab:green' if b[2] and b[2][1] else 'tab:red'
                   for b in bars])
  marked = [(p, b[2][0]) for p, b in zip(positions, bars) if b[2]]
  if marked:
    axes.scatter([m[1] for m in marked], [m[0] for m in marked], marker='|',
                 color='black', s=120, zorder=3, label='target')
    axes.legend(loc='lower right', fontsize=7)
  axes.set_yticks(positions)
  axes.set_yticklabels([b[0] for b in bars], fontsize=7)
  axes.invert_yaxis()
  axes.set_xscale('log')
  axes.axvline(1.0, color='black', linewidth=0.8)
  axes.set_xlabel('ours / upstream (median; < 1 is better)')
  axes.set_title('PolicySaver: ours vs upstream tf-agents 0.19.0')
  axes.grid(axis='x', which='both', alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, format='png', dpi=100)


def write_outputs(results: Dict[str, Any], output_dir: str) -> Dict[str, str]:
  """Writes the JSON, markdown and PNG files.

  Args:
    results: The results dict (see the module docstring).
    output_dir: The directory (created if missing).

  Returns:
    Their paths by kind: `'json'`, `'markdown'`, `'chart'`.
  """
  tf.io.gfile.makedirs(output_dir)
  paths = {
      'json': os.path.join(output_dir, JSON_FILENAME),
      'markdown': os.path.join(output_dir, MARKDOWN_FILENAME),
      'chart': os.path.join(output_dir, CHART_FILENAME),
  }
  with open(paths['json'], 'w') as f:
    json.dump(results, f, indent=2, sort_keys=False, allow_nan=False)
    f.write('\n')
  with open(paths['markdown'], 'w') as f:
    f.write(markdown_report(results))
  write_chart(results, paths['chart'])
  return paths
