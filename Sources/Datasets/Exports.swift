@_exported import BisslCore
