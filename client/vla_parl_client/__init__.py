"""`vla_parl_client`: the robot side of a `vla-parl serve` policy server, with no torch and no vla-parl.

    from vla_parl_client import PolicyClient, run_episode, keyboard_label

Needs only numpy, pillow and requests (the `vla-parl-client` distribution, built from client/ in the
vla-parl repository); `vla-parl` itself ships the same package, so `serving.PolicyClient` is this class.

- `PolicyClient` (`vla_parl_client.client`): actions, episode sessions, episode table, policy reloads.
- `PolicyServerError` (`vla_parl_client.errors`): an error answer or an unreachable server.
- `Robot`, `run_episode`, `keyboard_label`, `collection_mode` (`vla_parl_client.robot`): the loop a robot runs.
"""

from vla_parl_client.client import PolicyClient
from vla_parl_client.encoding import encode_png
from vla_parl_client.errors import PolicyServerError
from vla_parl_client.robot import EpisodeResult, Robot, collection_mode, keyboard_label, run_episode

__version__ = "0.1.0"

__all__ = ["PolicyClient", "PolicyServerError", "encode_png", "Robot", "EpisodeResult", "run_episode",
           "keyboard_label", "collection_mode", "__version__"]
