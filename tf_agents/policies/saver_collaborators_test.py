# coding=utf-8
"""Tests of PolicySaver's collaborators on their own.

New in this repository: `saver_arguments` (argument checks),
`saver_graph_cache` (the graph files kept for variables-only re-saves) and
`saver_signatures` (naming helpers). `PolicySaver` itself is tested by the
`policy_saver_*_test`s.
"""

import os

import numpy as np
import tensorflow as tf

from tf_agents.policies import saver_arguments
from tf_agents.policies import saver_graph_cache
from tf_agents.policies import saver_signatures


class SaverArgumentsTest(tf.test.TestCase):

  def testBatchSize(self):
    self.assertIsNone(saver_arguments.validated_batch_size(None))
    self.assertEqual(3, saver_arguments.validated_batch_size(np.int64(3)))
    for bad in (True, 0, 2**31, 1.0):
      with self.assertRaisesRegex(ValueError, 'batch_size'):
        saver_arguments.validated_batch_size(bad)

  def testMaxToKeep(self):
    self.assertIsNone(saver_arguments.validated_max_to_keep(None))
    self.assertEqual(2, saver_arguments.validated_max_to_keep(2))
    for bad in (True, 0, 1.5):
      with self.assertRaisesRegex(ValueError, 'max_to_keep'):
        saver_arguments.validated_max_to_keep(bad)

  def testConvertedFormats(self):
    self.assertEqual((), saver_arguments.validated_converted_formats([]))
    for bad in ('tflite', ['pdf']):
      with self.assertRaisesRegex(ValueError, 'converted_formats'):
        saver_arguments.validated_converted_formats(bad)

  def testNoiseSeed(self):
    self.assertEqual(7, saver_arguments.noise_seed(np.int32(7)))
    self.assertIsNone(saver_arguments.noise_seed(True))
    self.assertIsNone(saver_arguments.noise_seed(None))

  def testMetadata(self):
    self.assertEqual({}, saver_arguments.validated_metadata(None))
    with self.assertRaisesRegex(ValueError, 'non-empty'):
      saver_arguments.validated_metadata({'': tf.Variable(1)})
    with self.assertRaisesRegex(TypeError, 'tf.Variable'):
      saver_arguments.validated_metadata({'a': 1})

  def testTrainStep(self):
    with self.assertRaisesRegex(TypeError, 'integer'):
      saver_arguments.validated_train_step(tf.Variable(1.0))
    with self.assertRaisesRegex(ValueError, 'scalar'):
      saver_arguments.validated_train_step(tf.Variable([1]))
    step = saver_arguments.validated_train_step(None)
    self.assertEqual(tf.int64, step.dtype)
    self.assertEqual(-1, step.numpy())


class SaverSignaturesTest(tf.test.TestCase):

  def testInputNameProblem(self):
    self.assertIsNone(saver_signatures.input_name_problem('0/step_type'))
    self.assertIn('starts with', saver_signatures.input_name_problem('_x'))
    self.assertIn("' '", saver_signatures.input_name_problem('a b'))

  def testCheckUniqueKeys(self):
    saver_signatures.check_unique_keys('keys', ['a', 'b'])
    with self.assertRaisesRegex(ValueError, r"duplicate keys \['a'\]"):
      saver_signatures.check_unique_keys('keys', ['a', 'b', 'a'])

  def testPrefixedPathNames(self):
    spec = {'x': tf.TensorSpec([2]), 'y': tf.TensorSpec([])}
    named = saver_signatures.prefixed_path_names(spec, 'state', '_')
    self.assertEqual({'x': 'state_x', 'y': 'state_y'},
                     tf.nest.map_structure(lambda s: s.name, named))


class SaverGraphCacheTest(tf.test.TestCase):

  def testTokenFollowsTracing(self):
    module = tf.Module()
    module.f = tf.function(lambda x: x + 1)
    module.f.get_concrete_function(tf.TensorSpec([], tf.float32))
    token = saver_graph_cache.graph_token(module, {})
    self.assertEqual(token, saver_graph_cache.graph_token(module, {}))
    module.f.get_concrete_function(tf.TensorSpec([], tf.int32))
    self.assertNotEqual(token, saver_graph_cache.graph_token(module, {}))

  def testKeepsGraphFilesAndRewritesThem(self):
    source = self.create_tempdir().full_path
    with open(os.path.join(source, 'saved_model.pb'), 'wb') as f:
      f.write(b'graph')
    os.makedirs(os.path.join(source, 'variables'))
    with open(os.path.join(source, 'variables', 'variables.index'),
              'wb') as f:
      f.write(b'old')
    cache = saver_graph_cache.GraphFileCache()
    self.assertFalse(cache.filled)
    cache.keep(source, None, lambda: ('token',))
    self.assertTrue(cache.filled)
    prefixes = []
    target = self.create_tempdir().full_path
    write = lambda: lambda prefix: prefixes.append(prefix.numpy().decode())
    # Other options or another graph: a full save is needed.
    self.assertFalse(cache.write_variables_only(
        target, tf.saved_model.SaveOptions(), ('token',), write))
    self.assertTrue(cache.write_variables_only(target, None, ('token',),
                                               write))
    with open(os.path.join(target, 'saved_model.pb'), 'rb') as f:
      self.assertEqual(b'graph', f.read())
    self.assertEqual([saver_graph_cache.variables_prefix(target)], prefixes)
    self.assertFalse(os.path.exists(
        os.path.join(target, 'variables', 'variables.index')))
    self.assertFalse(cache.write_variables_only(target, None, ('other',),
                                                write))
    self.assertFalse(cache.filled)

  def testTracedWritersAreMadeOnce(self):
    variable = tf.Variable(1.0)
    writers = saver_graph_cache.TracedWriters()
    made = []

    def make():
      made.append(1)
      return tf.train.Checkpoint(v=variable)

    writer = writers.get('a', make)
    self.assertIs(writer, writers.get('a', make))
    self.assertLen(made, 1)
    prefix = os.path.join(self.create_tempdir().full_path, 'ckpt')
    writer(tf.constant(prefix))
    self.assertTrue(tf.io.gfile.exists(prefix + '.index'))


if __name__ == '__main__':
  tf.test.main()
