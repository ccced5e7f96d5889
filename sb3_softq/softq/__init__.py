from sb3_softq.softq.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_softq.softq.softq import SoftQ

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "SoftQ"]
