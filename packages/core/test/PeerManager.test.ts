import * as PeerManager from "@comms-dht/core/PeerManager"
import { peerManagerSuite } from "./suites/peerManagerSuite.js"

peerManagerSuite("PeerManager.layerMemory", PeerManager.layerMemory)
