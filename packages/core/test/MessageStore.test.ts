import * as MessageStore from "@comms-dht/core/MessageStore"
import { messageStoreSuite } from "./suites/messageStoreSuite.js"

messageStoreSuite("MessageStore.layerMemory", MessageStore.layerMemory)
