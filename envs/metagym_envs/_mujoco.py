"""Load Gymnasium's MuJoCo models without MuJoCo's ``settotalmass`` deprecation warning.

MuJoCo >= 3.4 warns about the ``settotalmass`` compiler attribute of Gymnasium's half_cheetah.xml,
on stderr and into ``MUJOCO_LOG.TXT`` in the working directory, once per environment made (a
sampler makes hundreds). :class:`TotalMassCompat` compiles the model without the attribute and
then does what it did, as the warning advises (``mj_setTotalmass`` then ``mj_setConst``, and the
mass statistics recomputed): the model's arrays and statistics, and therefore its trajectories,
are identical to the original's (checked in tests/envs/test_envs.py). Older MuJoCo (3.3, the
version ``metaworld`` 3.1.1 pins) does not warn, and compiles the model as usual.
"""

from __future__ import annotations

import re
from pathlib import Path

import mujoco

_SETTOTALMASS = re.compile(r'\s+settotalmass="([^"]+)"')
#: MuJoCo versions from which ``settotalmass`` is deprecated (and warned about).
WARNS_ABOUT_SETTOTALMASS = tuple(int(p) for p in mujoco.__version__.split(".")[:2]) >= (3, 4)


class TotalMassCompat:
    """Mix in before ``MujocoEnv``: replaces ``_initialize_simulation`` for models using
    ``settotalmass`` (other models, and models that include files, load as usual)."""

    def _initialize_simulation(self):
        text = Path(self.fullpath).read_text()
        match = _SETTOTALMASS.search(text)
        if match is None or "file=" in text or not WARNS_ABOUT_SETTOTALMASS:
            return super()._initialize_simulation()
        model = mujoco.MjModel.from_xml_string(text[: match.start()] + text[match.end() :])
        mujoco.mj_setTotalmass(model, float(match.group(1)))
        data = mujoco.MjData(model)
        mujoco.mj_setConst(model, data)
        # mj_setConst leaves the compiler's mass statistics as they were before the scaling.
        model.stat.meaninertia = float(model.dof_M0.mean())
        model.stat.meanmass = float(model.body_mass[1:].mean())
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, data
