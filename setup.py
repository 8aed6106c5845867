"""Package layout that pyproject.toml cannot express: recipes/ and configs/ ship as vla_parl.recipes and
vla_parl.configs, so `vla-parl run` finds them from a non-editable install and a top-level "recipes"
package cannot clash with other projects'; client/vla_parl_client (the torch-free robot client, also built
alone from client/pyproject.toml) ships as vla_parl_client. Everything else lives in pyproject.toml."""

from setuptools import find_packages, setup

packages = find_packages(include=["vla_parl", "vla_parl.*", "serving", "serving.*"])
packages += ["vla_parl.recipes"] + [f"vla_parl.configs{'.' + p if p else ''}" for p in
                                    [""] + find_packages(where="configs")]
packages += ["vla_parl_client"]    # the robot-side client; also its own distribution, built from client/

setup(packages=packages, package_dir={"vla_parl.recipes": "recipes", "vla_parl.configs": "configs",
                                      "vla_parl_client": "client/vla_parl_client"},
      package_data={"vla_parl.configs": ["*.yaml", "*/*.yaml"], "": ["*.yaml", "*.json"]})
